//! Criterion benches of enconf live in `benches/`; run them with `cargo bench -p enconf-benches`.
