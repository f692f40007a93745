//! What the tests of the C interface share.
#![allow(dead_code, clippy::print_stderr)]

use std::path::{Path, PathBuf};

/// The program at `path`, or `None` (a skip, said on stderr) when it is missing; missing under
/// `CI=true` is a failure.
pub fn tool(path: &str) -> Option<PathBuf> {
    let p = Path::new(path);
    if p.exists() {
        return Some(p.to_path_buf());
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{path} is missing under CI=true"
    );
    eprintln!("skipped: {path} is missing");
    None
}

/// `target/<profile>/deps`, where cargo puts `libenconf.so` and `libenconf.a`.
pub fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe.parent().map(Path::to_path_buf).unwrap_or_default();
    assert!(
        dir.join("libenconf.so").exists(),
        "no libenconf.so in {}",
        dir.display()
    );
    dir
}

/// `bindings/`.
pub fn bindings() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// What an error of the library says, `(code, field)`, read and then freed; `None` for NULL.
///
/// # Safety
/// `error` is NULL or a live error of the library's, not used after this call.
pub unsafe fn take_error(error: *mut enconf::EnconfError) -> Option<(String, Option<String>)> {
    use std::ffi::CStr;
    if error.is_null() {
        return None;
    }
    // SAFETY: a live error of the library's (as the caller promises); its strings live as long
    // as it, and it is freed once, after they are copied.
    unsafe {
        let code = CStr::from_ptr(enconf::enconf_error_code(error))
            .to_string_lossy()
            .into_owned();
        let field = enconf::enconf_error_field(error);
        let field =
            (!field.is_null()).then(|| CStr::from_ptr(field).to_string_lossy().into_owned());
        enconf::enconf_error_free(error);
        Some((code, field))
    }
}

/// `tests/c/<name>.c` compiled against the header and linked to `libenconf.so`, with
/// AddressSanitizer and UndefinedBehaviorSanitizer, into `dir`; `None` when there is no C
/// compiler (a skip, or a failure under `CI=true`).
pub fn compile_sanitized(name: &str, dir: &Path) -> Option<PathBuf> {
    let cc = tool("/usr/bin/cc")?;
    let crate_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let libs = library_dir();
    let program = dir.join(name);
    let out = std::process::Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g"])
        .args(["-fsanitize=address,undefined", "-fno-omit-frame-pointer"])
        .arg("-I")
        .arg(crate_dir.join("include"))
        .arg(crate_dir.join(format!("tests/c/{name}.c")))
        .arg("-o")
        .arg(&program)
        .arg(format!("-L{}", libs.display()))
        .arg(format!("-Wl,-rpath,{}", libs.display()))
        .arg("-lenconf")
        .output()
        .unwrap_or_else(|e| panic!("{}: {e}", cc.display()));
    assert!(
        out.status.success(),
        "cc: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(program)
}

/// What a sanitized program says about leaks and undefined behaviour: the environment to run
/// it with. Frames are unwound slowly so that a leak's stack reaches through the library.
pub const SANITIZERS: [(&str, &str); 2] = [
    (
        "ASAN_OPTIONS",
        "detect_leaks=1:abort_on_error=0:exitcode=23:fast_unwind_on_malloc=0",
    ),
    ("UBSAN_OPTIONS", "halt_on_error=1:print_stacktrace=1"),
];
