//! A throwaway PostgreSQL cluster for one test: Debian's `postgresql` package (installed by
//! `scripts/install-deps census`), a data folder in a temporary directory, a free loopback
//! port, password (SCRAM) authentication for the `signpost` role over TCP and, when asked,
//! TLS with a certificate from the test's CA. It can be stopped and started again on the
//! same port and data, to play a store that goes away under traffic.
//!
//! PostgreSQL refuses to run as root; as root, its commands run as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, TestCa};

pub const PASSWORD: &str = "zq7-census-db-password";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    server: Option<Child>,
}

/// The newest PostgreSQL's programs, or a loud failure naming the fix.
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| d.flatten().map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    versions.retain(|b| b.join("initdb").exists());
    versions.sort();
    versions.pop().unwrap_or_else(|| {
        panic!("PostgreSQL is not installed (no /usr/lib/postgresql/*/bin/initdb): run scripts/install-deps census")
    })
}

fn as_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

impl Postgres {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With TLS: a certificate for 127.0.0.1 issued by `ca`.
    pub fn start_tls(ca: &TestCa) -> Self {
        Self::start_with(Some(ca))
    }

    fn start_with(ca: Option<&TestCa>) -> Self {
        let bin = bin_dir();
        let dir = tempfile::Builder::new()
            .prefix("signpost-pg")
            .tempdir()
            .unwrap();
        let data = dir.path().join("data");
        let pwfile = dir.path().join("superuser-password");
        std::fs::write(&pwfile, "superuser-pw\n").unwrap();
        if as_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown the cluster's folder");
        }
        let pg = Postgres {
            dir,
            bin,
            port: free_port(),
            server: None,
        };
        let out = pg
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--no-sync",
            ])
            .arg(format!("--pwfile={}", pwfile.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut conf = format!(
            "listen_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = '{}'\nfsync = off\nmax_connections = 50\n",
            pg.port,
            pg.dir.path().display()
        );
        if let Some(ca) = ca {
            let (cert, key) = ca.issue(&["127.0.0.1", "localhost"]);
            std::fs::write(data.join("server.crt"), cert).unwrap();
            std::fs::write(data.join("server.key"), key).unwrap();
            pg.own(&data.join("server.crt"));
            pg.own(&data.join("server.key"));
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(
                data.join("server.key"),
                std::fs::Permissions::from_mode(0o600),
            )
            .unwrap();
            conf.push_str("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n");
        }
        let mut file = std::fs::read_to_string(data.join("postgresql.conf")).unwrap();
        file.push_str(&conf);
        std::fs::write(data.join("postgresql.conf"), file).unwrap();
        let mut pg = pg;
        pg.run();
        pg.sql_on(
            "postgres",
            &format!("CREATE ROLE signpost LOGIN PASSWORD '{PASSWORD}'"),
        );
        pg.sql_on("postgres", "CREATE DATABASE census OWNER signpost");
        pg
    }

    /// A command of PostgreSQL's, as the `postgres` user when this is root.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        if as_root() {
            let mut cmd = Command::new("setpriv");
            cmd.args([
                "--reuid=postgres",
                "--regid=postgres",
                "--init-groups",
                "--",
            ])
            .arg(path);
            cmd
        } else {
            Command::new(path)
        }
    }

    fn own(&self, path: &Path) {
        if as_root() {
            Command::new("chown")
                .arg("postgres:postgres")
                .arg(path)
                .status()
                .unwrap();
        }
    }

    /// Starts the server and waits until it accepts connections.
    fn run(&mut self) {
        let log = std::fs::File::create(self.dir.path().join("server.log")).unwrap();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.server = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = self
                .command("pg_isready")
                .args(["-q", "-h"])
                .arg(self.dir.path())
                .args(["-p", &self.port.to_string()])
                .status()
                .unwrap();
            if ready.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: connections are cut) and waits until it is gone.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // SAFETY: kill only sends a signal to the server we started.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            let _ = child.wait();
        }
    }

    /// Starts it again on the same port and data.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// `postgresql://signpost@127.0.0.1:PORT/census`, with no password in it.
    pub fn url(&self) -> String {
        format!("postgresql://signpost@127.0.0.1:{}/census", self.port)
    }

    /// The `signpost` role's password, in a file under `dir`.
    pub fn password_file(&self, dir: &Path) -> PathBuf {
        let path = dir.join("census-db-password");
        std::fs::write(&path, format!("{PASSWORD}\n")).unwrap();
        path
    }

    /// Runs SQL as the superuser on the census database; the output, unaligned, one row a line.
    pub fn sql(&self, sql: &str) -> String {
        self.sql_on("census", sql)
    }

    fn sql_on(&self, database: &str, sql: &str) -> String {
        let out = self
            .command("psql")
            .args(["-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.dir.path())
            .args([
                "-p",
                &self.port.to_string(),
                "-U",
                "postgres",
                "-d",
                database,
            ])
            .args(["-c", sql])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Everything in the census database, as `pg_dump` writes it.
    pub fn dump(&self) -> String {
        let out = self
            .command("pg_dump")
            .arg("-h")
            .arg(self.dir.path())
            .args(["-p", &self.port.to_string(), "-U", "postgres", "census"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "pg_dump: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// The server's own log, for a failure message.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        if let Some(mut child) = self.server.take() {
            // Immediate shutdown: nothing in a throwaway cluster is worth waiting for.
            // SAFETY: as in `stop`.
            unsafe { libc::kill(child.id() as i32, libc::SIGQUIT) };
            let _ = child.wait();
        }
    }
}
