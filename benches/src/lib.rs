//! Criterion benches of enconf live in `benches/`; run them with `cargo bench -p enconf-benches`.
//! What the benches and the scale tool (`src/bin/controller-scale.rs`) share.

/// Raises the open-files soft limit to the hard one: a listener per fake agent, and their
/// connections.
pub fn raise_open_files() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    // Left as it is when refused: the run then fails where it opens too many files.
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
}
