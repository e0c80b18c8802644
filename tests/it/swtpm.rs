//! A software TPM per test (feature `tpm`): `swtpm_setup` makes its EKs and EK certificates with
//! a local CA whose state is in the test's temp dir, then `swtpm socket` serves it on a free
//! loopback port. Dropping it stops the process.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct Swtpm {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pid: Option<i32>,
}

/// Two consecutive free ports (swtpm takes P for commands and P+1 for control).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = TcpListener::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p < u16::MAX && TcpListener::bind(("127.0.0.1", p + 1)).is_ok() {
            return p;
        }
    }
    panic!("no two consecutive free ports");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Swtpm {
    pub fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir_all(d.join("state")).unwrap();
        std::fs::create_dir_all(d.join("ca")).unwrap();
        std::fs::write(
            d.join("swtpm-localca.conf"),
            format!(
                "statedir = {ca}\nsigningkey = {ca}/signkey.pem\nissuercert = {ca}/issuercert.pem\ncertserial = {ca}/certserial\n",
                ca = d.join("ca").display()
            ),
        )
        .unwrap();
        std::fs::write(
            d.join("swtpm_setup.conf"),
            format!(
                "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = {}\n\
                 create_certs_tool_options = /etc/swtpm-localca.options\nactive_pcr_banks = sha256\n",
                d.join("swtpm-localca.conf").display()
            ),
        )
        .unwrap();
        run(Command::new("swtpm_setup")
            .args(["--tpm2", "--tpm-state"])
            .arg(d.join("state"))
            .args([
                "--createek",
                "--create-ek-cert",
                "--create-platform-cert",
                "--overwrite",
                "--config",
            ])
            .arg(d.join("swtpm_setup.conf")));
        let port = free_port_pair();
        let pid_file = d.join("swtpm.pid");
        run(Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", d.join("state").display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args([
                "--flags",
                "not-need-init,startup-clear",
                "--daemon",
                "--pid",
            ])
            .arg(format!("file={}", pid_file.display())));
        let pid = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok());
        Self { dir, port, pid }
    }

    pub fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    /// The local CA's self-signed root: what the server's `attestation.ek_roots` trusts.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("ca/swtpm-localca-rootca-cert.pem")
    }

    /// The intermediate that signed the EK certificates.
    pub fn intermediate(&self) -> PathBuf {
        self.dir.path().join("ca/issuercert.pem")
    }

    pub fn state_dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        if let Some(pid) = self.pid {
            let _ = Command::new("kill").arg(pid.to_string()).status();
        }
    }
}
