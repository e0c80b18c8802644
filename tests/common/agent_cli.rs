//! The `mandate-agent` command line with TPM support, for the tests that run it (the live TPM
//! tests in tests/it, the SDK suites in tests/sdk): included by path in each test binary.

/// The agent crate's `mandate-agent` binary, with its TPM support. Cargo builds only this
/// package's binaries for its tests, so the first test that needs it builds it (a no-op when
/// `cargo test --workspace --features mandate/tpm` already did), next to `mandate`.
pub fn agent_cli() -> std::path::PathBuf {
    static BUILT: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let mut cmd = std::process::Command::new(cargo);
            cmd.current_dir(env!("CARGO_MANIFEST_DIR")).args([
                "build",
                "--locked",
                "--quiet",
                "--package",
                "mandate-agent",
                "--bin",
                "mandate-agent",
                "--features",
                "cli,tpm",
            ]);
            if !cfg!(debug_assertions) {
                cmd.arg("--release");
            }
            let status = cmd
                .status()
                .unwrap_or_else(|e| panic!("cannot run cargo to build mandate-agent: {e}"));
            assert!(status.success(), "cannot build mandate-agent");
            std::path::Path::new(env!("CARGO_BIN_EXE_mandate")).with_file_name("mandate-agent")
        })
        .clone()
}
