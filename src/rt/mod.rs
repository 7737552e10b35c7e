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

/// Boxes a task's future where it will live: the box is allocated first
/// and the future written into it, so the compiler can build it there
/// instead of building it on the stack and copying all of it (a
/// connection's future is about 5 KiB, of which a new one uses a few
/// hundred bytes).
#[inline(always)]
pub(crate) fn boxed_future<F: std::future::Future>(
    make: impl FnOnce() -> F,
) -> std::pin::Pin<Box<F>> {
    let slot = Box::<F>::new_uninit();
    Box::into_pin(Box::write(slot, make()))
}
