//! SMTP alerts against an SMTP sink the test runs on loopback (220, EHLO or
//! HELO, MAIL, RCPT, DATA, QUIT; every message recorded): an agent in the
//! namespace lab whose TCP checker takes a real down and up mails
//! keepalived's subjects and bodies, the first ones only once the sink comes
//! up (retried); quorum changes are mailed, a real with `smtp_alert = false`
//! is not; VRRP instance and group alerts (the hooks VRRP calls) are mailed
//! once per state; a full queue drops the oldest alerts and counts them.

mod common;

use common::xlb_bin;
use std::{
    collections::BTreeMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};
use xlb::{
    alert::{Alerter, VrrpState, mailer::Policy},
    config::{
        self, Config,
        vrrp::{Instance, SyncGroup},
    },
};
use xlb_testbed::{
    agent::Agent,
    lab::{DrLab, LabOptions},
};

/// Longest a change may take to show up (checks run every 0.3 s; a retried
/// alert waits up to 4 s).
const SETTLE: Duration = Duration::from_secs(30);
/// The sink's port inside the director's namespace.
const SINK_PORT: u16 = 2525;

/// One message the sink accepted.
#[derive(Clone, Debug)]
struct Mail {
    helo: String,
    from: String,
    rcpt: Vec<String>,
    headers: Vec<(String, String)>,
    body: String,
}

impl Mail {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn subject(&self) -> &str {
        self.header("Subject").unwrap_or("")
    }
}

/// A minimal SMTP server: one connection at a time, every reply positive.
struct Sink {
    mails: Arc<Mutex<Vec<Mail>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Sink {
    fn serve(listener: TcpListener) -> Sink {
        listener.set_nonblocking(true).unwrap();
        let mails = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (mails, stop) = (mails.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((s, _)) => {
                            if let Err(e) = session(s, &mails) {
                                eprintln!("sink: session failed: {e}");
                            }
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Sink {
            mails,
            stop,
            thread: Some(thread),
        }
    }

    fn mails(&self) -> Vec<Mail> {
        self.mails.lock().unwrap().clone()
    }

    /// Waits (bounded by [`SETTLE`]) until `n` messages arrived.
    fn wait_for(&self, n: usize) -> Vec<Mail> {
        wait_for(&format!("{n} mails"), || self.mails().len() >= n);
        self.mails()
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One SMTP conversation; a message is recorded when its DATA ends.
fn session(stream: TcpStream, mails: &Mutex<Vec<Mail>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut out = stream.try_clone()?;
    let mut lines = BufReader::new(stream);
    let mut line = String::new();
    let mut read = |line: &mut String| -> std::io::Result<bool> {
        line.clear();
        Ok(lines.read_line(line)? > 0)
    };
    out.write_all(b"220 sink ESMTP\r\n")?;
    let (mut helo, mut from, mut rcpt) = (String::new(), String::new(), Vec::new());
    while read(&mut line)? {
        let cmd = line.trim_end_matches(['\r', '\n']).to_string();
        let upper = cmd.to_ascii_uppercase();
        if upper.starts_with("EHLO ") || upper.starts_with("HELO ") {
            helo = cmd[5..].to_string();
            out.write_all(b"250 sink\r\n")?;
        } else if upper.starts_with("MAIL FROM:") {
            from = angle(&cmd[10..]);
            rcpt.clear();
            out.write_all(b"250 OK\r\n")?;
        } else if upper.starts_with("RCPT TO:") {
            rcpt.push(angle(&cmd[8..]));
            out.write_all(b"250 OK\r\n")?;
        } else if upper == "DATA" {
            out.write_all(b"354 end with <CRLF>.<CRLF>\r\n")?;
            let mut data = Vec::new();
            loop {
                if !read(&mut line)? {
                    return Ok(());
                }
                let l = line.trim_end_matches(['\r', '\n']);
                if l == "." {
                    break;
                }
                data.push(l.strip_prefix('.').unwrap_or(l).to_string());
            }
            let (headers, body) = parse_data(&data);
            mails.lock().unwrap().push(Mail {
                helo: helo.clone(),
                from: from.clone(),
                rcpt: rcpt.clone(),
                headers,
                body,
            });
            out.write_all(b"250 queued\r\n")?;
        } else if upper == "QUIT" {
            out.write_all(b"221 bye\r\n")?;
            return Ok(());
        } else if upper == "RSET" || upper == "NOOP" {
            out.write_all(b"250 OK\r\n")?;
        } else {
            out.write_all(b"502 not here\r\n")?;
        }
    }
    Ok(())
}

/// The address between `<` and `>` (parameters after it ignored).
fn angle(arg: &str) -> String {
    let arg = arg.trim();
    match (arg.find('<'), arg.find('>')) {
        (Some(a), Some(b)) if a < b => arg[a + 1..b].to_string(),
        _ => arg.to_string(),
    }
}

/// Headers (folded lines joined) and the body of a message's DATA lines.
fn parse_data(lines: &[String]) -> (Vec<(String, String)>, String) {
    let split = lines
        .iter()
        .position(|l| l.is_empty())
        .unwrap_or(lines.len());
    let mut headers: Vec<(String, String)> = Vec::new();
    for l in &lines[..split] {
        if l.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(l.trim());
            }
        } else if let Some((n, v)) = l.split_once(':') {
            headers.push((n.to_string(), v.trim().to_string()));
        }
    }
    let body = lines.get(split + 1..).unwrap_or_default().join("\n");
    (headers, body)
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + SETTLE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_string()
}

/// Reals and weights in `xlb status`.
fn pool(lab: &DrLab) -> BTreeMap<IpAddr, u32> {
    lab.status(&xlb_bin())
        .unwrap()
        .lines()
        .filter_map(|l| l.trim_start().strip_prefix("-> "))
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let addr: SocketAddr = w.next()?.parse().ok()?;
            let weight = w.nth(1)?.parse().ok()?;
            Some((addr.ip(), weight))
        })
        .collect()
}

/// Subject and body of each mail, for comparing whole sequences.
fn texts(mails: &[Mail]) -> Vec<(String, String)> {
    mails
        .iter()
        .map(|m| (m.subject().to_string(), m.body.clone()))
        .collect()
}

#[test]
fn checker_changes_are_mailed_as_keepalived_does_and_retried_until_the_server_answers() {
    xlb_testbed::require_root().unwrap();
    let mut lab = DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap();
    let dir: PathBuf = std::env::temp_dir().join(format!("xlb-alert-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let check = "[[service.real.check]]\ntype = \"tcp\"\nconnect_timeout = 0.5\nretry = 0\n";
    let text = format!(
        r#"[global]
notification_email = ["ops@example.com", "pager@example.com"]
notification_email_from = "xlb@director.test"
smtp_server = {{ host = "127.0.0.1", port = {SINK_PORT} }}
smtp_helo_name = "director.test"
smtp_connect_timeout = 2

[dataplane]
interfaces = ["eth0"]
xdp_mode = "generic"
pin_path = "{pin}"

[[service]]
vip = "{vip}"
port = {port}
scheduler = "rr"
method = "dr"
delay_loop = 0.3
quorum = 2
smtp_alert = true

[[service.real]]
address = "{r1}"
{check}
[[service.real]]
address = "{r2}"
smtp_alert = false
{check}"#,
        pin = lab.pin_path.display(),
        vip = lab.vip,
        port = lab.port,
        r1 = lab.reals[0].addr,
        r2 = lab.reals[1].addr,
    );
    let path = dir.join("xlb.toml");
    std::fs::write(&path, text).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
    let [a1, a2] = [0, 1].map(|i| lab.reals[i].addr);
    wait_for("both reals in the pool", || {
        pool(&lab) == BTreeMap::from([(a1, 1), (a2, 1)])
    });

    // The sink is not up yet: the first alert fails and is retried.
    lab.reals[0].server.stop();
    wait_for("real1 out of the pool", || !pool(&lab).contains_key(&a1));
    wait_for("a failed delivery retried", || {
        agent
            .log()
            .iter()
            .any(|l| l.contains("sending alert failed; retrying"))
    });
    let listener = lab
        .director
        .enter(|| TcpListener::bind(("127.0.0.1", SINK_PORT)))
        .unwrap()
        .unwrap();
    let sink = Sink::serve(listener);
    sink.wait_for(2);

    lab.reals[0].server =
        xlb_testbed::http::serve_name(&lab.reals[0].ns, "0.0.0.0:80".parse().unwrap(), "real1")
            .unwrap();
    wait_for("real1 back", || pool(&lab).get(&a1) == Some(&1));
    sink.wait_for(4);

    // real2 does not alert; its service's quorum still does.
    lab.reals[1].server.stop();
    wait_for("real2 out of the pool", || !pool(&lab).contains_key(&a2));
    let mails = sink.wait_for(5);
    agent.stop().unwrap();

    let rid = host_name();
    let real1 = format!(
        "[{rid}] Realserver [{a1}]:tcp:{p} of virtual server [{vip}]:tcp:{p}",
        p = lab.port,
        vip = lab.vip
    );
    let vs = format!("[{rid}] Virtualserver [{}]:tcp:{}", lab.vip, lab.port);
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        texts(&mails),
        [
            s(
                &format!("{real1} - DOWN"),
                "=> TCP CHECK failed on service <="
            ),
            s(&format!("{vs} - DOWN"), "=> Lost quorum 2+0=2 <= 1 <="),
            s(
                &format!("{real1} - UP"),
                "=> TCP CHECK succeed on service <="
            ),
            s(&format!("{vs} - UP"), "=> Gained quorum 2+0=2 <= 2 <="),
            s(&format!("{vs} - DOWN"), "=> Lost quorum 2+0=2 <= 1 <="),
        ]
    );
    for m in &mails {
        assert_eq!(m.helo, "director.test");
        assert_eq!(m.from, "xlb@director.test");
        assert_eq!(m.rcpt, ["ops@example.com", "pager@example.com"]);
        assert_eq!(m.header("From"), Some("xlb@director.test"));
        assert_eq!(m.header("To"), Some("ops@example.com, pager@example.com"));
        assert_eq!(m.header("X-Mailer"), Some("xlb"));
        assert!(m.header("Date").is_some(), "{m:?}");
    }
    drop(sink);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A config that mails `lb1`'s alerts to a sink on `port` of loopback.
fn alert_config(port: u16) -> Config {
    let mut c = config::parse(
        "t.toml",
        &format!(
            "[global]\nnotification_email = [\"ops@example.com\"]\nnotification_email_from = \"lb1@example.com\"\nsmtp_server = {{ host = \"127.0.0.1\", port = {port} }}\nsmtp_connect_timeout = 2\n[dataplane]\ninterfaces = [\"eth0\"]\n"
        ),
    )
    .unwrap();
    c.global.router_id = Some("lb1".into());
    c
}

fn instance(name: &str, smtp_alert: Option<bool>) -> Instance {
    Instance {
        name: name.into(),
        interface: "eth0".into(),
        vrid: 51,
        version: 2,
        priority: 100,
        initial_state: Default::default(),
        advert_int: Duration::from_secs(1),
        preempt: true,
        preempt_delay: Duration::ZERO,
        accept: true,
        auth: None,
        mcast_src_ip: None,
        unicast_src_ip: None,
        unicast_peers: vec![],
        check_unicast_src: false,
        virtual_ipaddress: vec![],
        virtual_ipaddress_excluded: vec![],
        virtual_routes: vec![],
        virtual_rules: vec![],
        track_interfaces: vec![],
        track_scripts: vec![],
        track_files: vec![],
        vmac: None,
        garp: Default::default(),
        lower_prio_no_advert: false,
        higher_prio_send_advert: true,
        notify: Default::default(),
        smtp_alert,
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Waits in the runtime (so the delivery task runs) until `n` mails arrived.
async fn mails_in(sink: &Sink, n: usize) -> Vec<Mail> {
    let deadline = Instant::now() + SETTLE;
    while sink.mails().len() < n {
        assert!(Instant::now() < deadline, "timed out waiting for {n} mails");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    sink.mails()
}

#[test]
fn vrrp_instance_and_group_changes_are_mailed_once_per_state() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let sink = Sink::serve(listener);
    let mut c = alert_config(port);
    c.global.smtp_alert_vrrp = Some(true);
    c.vrrp.instances = vec![instance("VI_1", None), instance("VI_2", Some(false))];
    c.vrrp.sync_groups = vec![SyncGroup {
        name: "VG_1".into(),
        members: vec!["VI_1".into()],
        notify: Default::default(),
        track_interfaces: vec![],
        track_scripts: vec![],
        track_files: vec![],
        smtp_alert: None,
    }];
    let rt = runtime();
    let mails = rt.block_on(async {
        let alerts = Alerter::start(&c).unwrap();
        alerts.vrrp_instance("VI_1", VrrpState::Backup);
        alerts.vrrp_instance("VI_1", VrrpState::Master);
        alerts.vrrp_instance("VI_1", VrrpState::Master);
        alerts.vrrp_instance("VI_2", VrrpState::Master);
        alerts.vrrp_instance("VI_3", VrrpState::Master);
        alerts.vrrp_group("VG_1", VrrpState::Master);
        alerts.vrrp_instance("VI_1", VrrpState::Fault);
        alerts.vrrp_group("VG_1", VrrpState::Fault);
        alerts.vrrp_instance("VI_1", VrrpState::Stop);
        alerts.vrrp_group("VG_1", VrrpState::Stop);
        assert!(alerts.flush(SETTLE).await);
        assert_eq!(alerts.stats().sent, 7);
        mails_in(&sink, 7).await
    });
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        texts(&mails),
        [
            s(
                "[lb1] VRRP Instance VI_1 - Entering BACKUP state",
                "=> VRRP Instance is no longer owning VRRP VIPs <="
            ),
            s(
                "[lb1] VRRP Instance VI_1 - Entering MASTER state",
                "=> VRRP Instance is now owning VRRP VIPs <="
            ),
            s(
                "[lb1] VRRP Group VG_1 - Entering MASTER state",
                "=> All VRRP group instances are now in MASTER state <="
            ),
            s(
                "[lb1] VRRP Instance VI_1 - Entering FAULT state",
                "=> VRRP Instance is no longer owning VRRP VIPs <="
            ),
            s(
                "[lb1] VRRP Group VG_1 - Entering FAULT state",
                "=> All VRRP group instances are now in FAULT state <="
            ),
            s(
                "[lb1] VRRP Instance VI_1 - Stopping",
                "=> VRRP Instance stopping <="
            ),
            s(
                "[lb1] VRRP Group VG_1 - Stopping",
                "=> All VRRP group instances are now stopping <="
            ),
        ]
    );
    assert_eq!(mails[0].from, "lb1@example.com");
    assert_eq!(mails[0].rcpt, ["ops@example.com"]);
}

#[test]
fn a_full_queue_drops_the_oldest_alerts_and_counts_them() {
    // Reserve a loopback port, then leave it closed: the sink is down.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let c = alert_config(port);
    let policy = Policy {
        capacity: 2,
        first_retry: Duration::from_millis(300),
        max_retry: Duration::from_millis(300),
        give_up_after: Duration::from_secs(120),
    };
    let rt = runtime();
    let (sink, mails, stats) = rt.block_on(async {
        let alerts = Alerter::start_with(&c, policy).unwrap();
        let alert = |n: u32| xlb::alert::message::Message {
            subject: format!("alert {n}"),
            body: format!("body {n}"),
        };
        alerts.send(alert(0));
        // Alert 0 is taken and retried; the queue is empty again.
        let deadline = Instant::now() + SETTLE;
        while alerts.stats().queued > 0 {
            assert!(Instant::now() < deadline, "alert 0 never taken");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        for n in 1..=5 {
            alerts.send(alert(n));
        }
        let stats = alerts.stats();
        assert_eq!((stats.queued, stats.dropped), (2, 3));
        let sink = Sink::serve(TcpListener::bind(("127.0.0.1", port)).unwrap());
        let mails = mails_in(&sink, 3).await;
        assert!(alerts.flush(SETTLE).await);
        (sink, mails, alerts.stats())
    });
    let subjects: Vec<&str> = mails.iter().map(Mail::subject).collect();
    assert_eq!(subjects, ["alert 0", "alert 4", "alert 5"]);
    assert_eq!(mails[1].body, "body 4");
    assert_eq!((stats.sent, stats.dropped, stats.failed), (3, 3, 0));
    drop(sink);
}
