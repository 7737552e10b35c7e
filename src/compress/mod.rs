//! Response compression: `Accept-Encoding` negotiation, content-type
//! matching, and streaming encoders/decoders over well-kept crates.
//! Pure: no I/O, no runtime.
