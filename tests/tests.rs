//! The one integration test binary.

mod ssh;
mod support {
    pub mod sshd;
}
