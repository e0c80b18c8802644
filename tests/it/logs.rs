//! What mandate writes to its log (stderr), as an operator's log file or collector receives it.

/// A log that is not a terminal (a file, a pipe to a collector) gets plain text: no ANSI colour
/// escapes to strip or to garble a search.
#[test]
fn log_lines_to_a_file_or_pipe_carry_no_ansi_escapes() {
    let dir = tempfile::tempdir().unwrap();
    // No config file in the working directory: mandate warns and uses its defaults (a SQLite
    // file there), so there is a log line to look at.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mandate"))
        .arg("migrate")
        .current_dir(dir.path())
        .env("MANDATE_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(
        log.contains("mandate.toml not found"),
        "a warning was logged: {log}"
    );
    assert!(!log.contains('\u{1b}'), "no escape sequences: {log:?}");
}
