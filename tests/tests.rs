//! The one integration test binary: each module is a file under `tests/`.

mod parse;
