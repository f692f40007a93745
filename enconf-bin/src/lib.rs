//! The thin enconf binaries (`enconf-controller`, `enconf-agent`) live in `src/bin/`: they parse
//! configuration, build the library objects and run. None is built yet.
