//! A real etcd cluster on loopback for the fleet tests: members started from
//! Debian's etcd-server package, each with its own data folder, killed and
//! started again at will.
#![allow(dead_code, reason = "each test binary uses its own part")]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("port").local_addr().expect("addr").port()
}

/// TLS material for the members and clients (`openssl`).
pub struct Tls {
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Tls {
    /// A CA, a server certificate for 127.0.0.1 and a client certificate.
    pub fn make(dir: &std::path::Path) -> Tls {
        std::fs::create_dir_all(dir).expect("dir");
        let run = |args: &[&str]| {
            let o = Command::new("openssl").args(args).current_dir(dir).output().expect("openssl");
            assert!(o.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&o.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=segc-test-ca",
        ]);
        std::fs::write(dir.join("server.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n").expect("ext");
        std::fs::write(dir.join("client.ext"), "extendedKeyUsage=clientAuth\n").expect("ext");
        for (name, ext) in [("server", "server.ext"), ("client", "client.ext")] {
            run(&[
                "req",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-keyout",
                &format!("{name}.key"),
                "-out",
                &format!("{name}.csr"),
                "-subj",
                &format!("/CN=segc-{name}"),
            ]);
            run(&[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-out",
                &format!("{name}.pem"),
                "-days",
                "2",
                "-extfile",
                ext,
            ]);
        }
        Tls {
            ca: dir.join("ca.pem"),
            server_cert: dir.join("server.pem"),
            server_key: dir.join("server.key"),
            client_cert: dir.join("client.pem"),
            client_key: dir.join("client.key"),
        }
    }
}

struct Member {
    name: String,
    client: u16,
    peer: u16,
    child: Option<Child>,
}

pub struct Cluster {
    dir: PathBuf,
    members: Vec<Member>,
    initial: String,
    tls: Option<(PathBuf, PathBuf, PathBuf)>,
}

impl Cluster {
    /// Starts `n` members and waits until the cluster answers.
    pub fn start(dir: &std::path::Path, n: usize) -> Cluster {
        Self::start_with(dir, n, None)
    }

    /// Members that take client connections over TLS only, with client certificates.
    pub fn start_tls(dir: &std::path::Path, tls: &Tls) -> Cluster {
        Self::start_with(dir, 1, Some((tls.ca.clone(), tls.server_cert.clone(), tls.server_key.clone())))
    }

    fn start_with(dir: &std::path::Path, n: usize, tls: Option<(PathBuf, PathBuf, PathBuf)>) -> Cluster {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir).expect("dir");
        let members: Vec<Member> =
            (0..n).map(|i| Member { name: format!("m{i}"), client: free_port(), peer: free_port(), child: None }).collect();
        let initial = members.iter().map(|m| format!("{}=http://127.0.0.1:{}", m.name, m.peer)).collect::<Vec<_>>().join(",");
        let mut c = Cluster { dir: dir.to_path_buf(), members, initial, tls };
        for i in 0..n {
            c.start_member(i);
        }
        c.wait_healthy(Duration::from_secs(30));
        c
    }

    fn scheme(&self) -> &str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn endpoints(&self) -> String {
        self.members.iter().map(|m| format!("{}://127.0.0.1:{}", self.scheme(), m.client)).collect::<Vec<_>>().join(",")
    }

    pub fn start_member(&mut self, i: usize) {
        let scheme = self.scheme().to_string();
        let m = &self.members[i];
        let url = format!("{scheme}://127.0.0.1:{}", m.client);
        let mut cmd = Command::new("etcd");
        cmd.args(["--name", &m.name, "--data-dir"])
            .arg(self.dir.join(&m.name))
            .args(["--listen-client-urls", &url, "--advertise-client-urls", &url])
            .args(["--listen-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-advertise-peer-urls", &format!("http://127.0.0.1:{}", m.peer)])
            .args(["--initial-cluster", &self.initial, "--initial-cluster-state", "new", "--initial-cluster-token", "segc-test"])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.dir.join(format!("{}.log", m.name))).map_or(Stdio::null(), Stdio::from));
        if let Some((ca, cert, key)) = &self.tls {
            cmd.arg("--cert-file").arg(cert).arg("--key-file").arg(key).arg("--trusted-ca-file").arg(ca).arg("--client-cert-auth");
        }
        let child = cmd.spawn().expect("etcd starts (apt-get install etcd-server)");
        self.members[i].child = Some(child);
    }

    /// SIGKILL one member.
    pub fn kill_member(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn kill_all(&mut self) {
        for i in 0..self.members.len() {
            self.kill_member(i);
        }
    }

    pub fn start_all(&mut self) {
        for i in 0..self.members.len() {
            if self.members[i].child.is_none() {
                self.start_member(i);
            }
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// etcdctl against the cluster (plain endpoints only).
    pub fn etcdctl(&self, args: &[&str]) -> std::process::Output {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.endpoints()))
            .args(args)
            .output()
            .expect("etcdctl")
    }

    pub fn wait_healthy(&self, within: Duration) {
        if self.tls.is_some() {
            std::thread::sleep(Duration::from_secs(2));
            return;
        }
        let end = Instant::now() + within;
        loop {
            if self.etcdctl(&["put", "/segc-test/ping", "1"]).status.success() {
                return;
            }
            assert!(Instant::now() < end, "the etcd cluster did not become healthy: see {}", self.dir.display());
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.kill_all();
    }
}
