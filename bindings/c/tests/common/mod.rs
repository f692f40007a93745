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
