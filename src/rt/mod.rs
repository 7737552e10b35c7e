//! Runtime plumbing under the data plane, with no HTTP in it: wall
//! seconds from a monotonic instant, I/O
//! deadlines on the thread's own slab, reusable buffers and the writes
//! that drain them, zero-copy splicing between sockets, and the plain or
//! TLS connection type every socket is used through, and the watch for
//! an early answer while a body is still being sent.

pub(crate) mod buffer;
pub(crate) mod clock;
pub(crate) mod conn;
pub(crate) mod deadline;
pub(crate) mod splice;
pub(crate) mod watch;
