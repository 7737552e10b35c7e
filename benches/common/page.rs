//! The deterministic HTML page the compression benches share.

/// A deterministic page shaped like a real one: head, nav, nested sections
/// with repeated class names, links and prose from a small vocabulary.
pub fn html_page(len: usize) -> Vec<u8> {
    const WORDS: [&str; 24] = [
        "proxy",
        "request",
        "the",
        "upstream",
        "of",
        "and",
        "response",
        "cache",
        "route",
        "header",
        "to",
        "a",
        "worker",
        "core",
        "body",
        "is",
        "connection",
        "in",
        "client",
        "latency",
        "with",
        "server",
        "for",
        "timeout",
    ];
    let mut rng = 0x2545_f491_u64;
    let mut next = |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    let mut page = String::from(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>ringress docs</title><link rel=\"stylesheet\" href=\"/static/site.css\"></head>\n<body><nav class=\"nav\"><ul class=\"nav-list\">\n",
    );
    for i in 0..12 {
        page += &format!(
            "<li class=\"nav-item\"><a class=\"nav-link\" href=\"/docs/section-{i}.html\">Section {i}</a></li>\n"
        );
    }
    page += "</ul></nav>\n<main class=\"content\">\n";
    let mut section = 0;
    while page.len() < len {
        section += 1;
        page += &format!(
            "<section class=\"section\" id=\"s{section}\"><h2 class=\"section-title\">Part {section}</h2>\n<div class=\"row\"><div class=\"col col-8\"><p class=\"text\">"
        );
        for _ in 0..40 + next(60) {
            page += WORDS[next(WORDS.len())];
            page += if next(12) == 0 { ". " } else { " " };
        }
        page += "</p></div>\n<div class=\"col col-4\"><ul class=\"links\">";
        for _ in 0..3 + next(4) {
            let n = next(5000);
            page += &format!(
                "<li><a href=\"/item/{n}\" class=\"link link-{}\">item {n}</a></li>",
                next(4)
            );
        }
        page += "</ul></div></div></section>\n";
    }
    let mut bytes = page.into_bytes();
    bytes.truncate(len);
    bytes
}
