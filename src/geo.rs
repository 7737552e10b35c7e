//! Client regions for geo-targeted balancing: a CIDR table from the config
//! (longest prefix wins) and, when configured, a MaxMind/DB-IP `.mmdb`
//! database (country or continent code). Regions are small numbers; each
//! has a preference list: itself, then its configured nearest regions.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Arc;

use maxminddb::PathElement;

use crate::net::{Cidr, CidrSet};

/// Which mmdb field names the region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MmdbField {
    /// `country.iso_code`, lower-cased (`de`, `us`).
    Country,
    /// `continent.code`, lower-cased (`eu`, `na`).
    Continent,
}

#[derive(Default)]
pub struct Geo {
    names: Vec<String>,
    by_name: HashMap<String, u16>,
    ranges: CidrSet,
    /// Region of each range in `ranges`.
    range_region: Vec<u16>,
    mmdb: Option<(Arc<maxminddb::Reader<Vec<u8>>>, MmdbField)>,
    /// Per region: itself, then its nearest regions in order.
    preference: Vec<Vec<u16>>,
}

impl std::fmt::Debug for Geo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Geo")
            .field("regions", &self.names)
            .field("ranges", &self.ranges.0.len())
            .field("mmdb", &self.mmdb.is_some())
            .finish()
    }
}

impl Geo {
    /// The id of region `name`, adding it if new.
    pub fn intern(&mut self, name: &str) -> u16 {
        let name = name.to_ascii_lowercase();
        if let Some(&id) = self.by_name.get(&name) {
            return id;
        }
        let id = self.names.len() as u16;
        self.names.push(name.clone());
        self.by_name.insert(name, id);
        self.preference.push(vec![id]);
        id
    }

    pub fn add_range(&mut self, cidr: Cidr, region: u16) {
        self.ranges.0.push(cidr);
        self.range_region.push(region);
    }

    pub fn add_nearest(&mut self, region: u16, nearest: u16) {
        let list = &mut self.preference[region as usize];
        if !list.contains(&nearest) {
            list.push(nearest);
        }
    }

    pub fn open_mmdb(&mut self, path: &Path, field: MmdbField) -> Result<(), String> {
        let reader = maxminddb::Reader::open_readfile(path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        self.mmdb = Some((Arc::new(reader), field));
        Ok(())
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty() && self.mmdb.is_none()
    }

    pub fn name(&self, id: u16) -> Option<&str> {
        self.names.get(id as usize).map(String::as_str)
    }

    /// The client's region: the config's ranges first, then the mmdb.
    pub fn region_of(&self, ip: IpAddr) -> Option<u16> {
        if let Some(i) = self.ranges.longest_match(ip) {
            return self.range_region.get(i).copied();
        }
        let (reader, field) = self.mmdb.as_ref()?;
        let path = match field {
            MmdbField::Country => [PathElement::Key("country"), PathElement::Key("iso_code")],
            MmdbField::Continent => [PathElement::Key("continent"), PathElement::Key("code")],
        };
        let found = reader.lookup(ip).ok()?;
        let code: &str = found.decode_path(&path).ok()??;
        self.names
            .iter()
            .position(|n| n.eq_ignore_ascii_case(code))
            .map(|i| i as u16)
    }

    /// Regions to try for a client of `region`, best first.
    pub fn preference(&self, region: u16) -> &[u16] {
        self.preference
            .get(region as usize)
            .map_or(&[], Vec::as_slice)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_and_preferences() {
        let mut g = Geo::default();
        let eu = g.intern("EU");
        let us = g.intern("us");
        assert_eq!(g.intern("eu"), eu);
        g.add_range(Cidr::parse("10.0.0.0/8").unwrap(), us);
        g.add_range(Cidr::parse("10.1.0.0/16").unwrap(), eu);
        g.add_nearest(eu, us);
        assert_eq!(g.region_of("10.1.2.3".parse().unwrap()), Some(eu));
        assert_eq!(g.region_of("10.2.2.3".parse().unwrap()), Some(us));
        assert_eq!(g.region_of("192.0.2.1".parse().unwrap()), None);
        assert_eq!(g.preference(eu), &[eu, us]);
        assert_eq!(g.preference(us), &[us]);
        assert_eq!(g.name(eu), Some("eu"));
    }
}
