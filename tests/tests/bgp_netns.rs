//! Scale-out over BGP (issue 19) with real bird2 daemons: the director's
//! bird (driven by `xlb run` through the generated include and its control
//! socket) peers with a router bird in the client's namespace, and the
//! test reads what the router learned. Announcements follow the reals'
//! health; a reload that adds a VIP reconfigures bird without resetting
//! the BGP session or the unchanged VIP; `xlb drain` withdraws before the
//! agent stops and established flows keep forwarding meanwhile; a killed
//! agent leaves the routes announced, and SIGTERM withdraws them.

mod check_lab;
mod common;

use check_lab::{TIMEOUT, wait_for};
use common::xlb_bin;
use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    process::Command,
};
use xlb_testbed::{
    agent::Agent,
    bird::Bird,
    http::{HttpConn, get_name, serve_name},
    lab::{DrLab, LabOptions},
    scrape,
};

/// A second VIP the reload adds (announced only; no client uses it).
const VIP2: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);

fn lab() -> DrLab {
    xlb_testbed::require_root().unwrap();
    DrLab::build(&LabOptions {
        weights: vec![1, 1],
        peer_xdp: common::peer_pass(),
        ..LabOptions::default()
    })
    .unwrap()
}

/// A BGP session with fast retries (the defaults wait seconds to minutes).
fn session(name: &str, local: IpAddr, las: u32, peer: IpAddr, pas: u32, channel: &str) -> String {
    format!(
        "protocol bgp {name} {{\n  local {local} as {las};\n  neighbor {peer} as {pas};\n  \
         connect delay time 1;\n  connect retry time 1;\n  error wait time 1, 2;\n  \
         ipv4 {{ {channel} }};\n}}\n"
    )
}

/// The router: learns every route, sends none, touches no kernel table.
fn start_router(lab: &DrLab, dir: &Path) -> Bird {
    let conf = format!(
        "log stderr all;\nrouter id {c};\nprotocol device {{}}\n{}",
        session(
            "director",
            lab.client_addr,
            65000,
            lab.director_addr,
            65001,
            "import all; export none;"
        ),
        c = lab.client_addr,
    );
    Bird::start(&lab.client, &dir.join("router"), &conf).unwrap()
}

/// The director's bird as docs tell an operator to write it: the include
/// (holding a filter that rejects everything until the agent fills it) and an export of the agent's protocols.
fn start_director_bird(lab: &DrLab, dir: &Path) -> (Bird, PathBuf) {
    let bdir = dir.join("director");
    std::fs::create_dir_all(&bdir).unwrap();
    let include = bdir.join("xlb-vips.conf");
    std::fs::write(&include, xlb::bgp::include::EMPTY).unwrap();
    let conf = format!(
        "log stderr all;\nrouter id {d};\nprotocol device {{}}\ninclude \"{}\";\n{}",
        include.display(),
        session(
            "uplink",
            lab.director_addr,
            65001,
            lab.client_addr,
            65000,
            "import none; export filter xlb_export;"
        ),
        d = lab.director_addr,
    );
    (Bird::start(&lab.director, &bdir, &conf).unwrap(), include)
}

/// The lab's DR service with a TCP check per real, `extra_services`, and `[bgp]`.
fn config(lab: &DrLab, bird: &Bird, include: &Path, extra_services: &str, bgp: &str) -> String {
    let check = "[[service.real.check]]\ntype = \"tcp\"\nconnect_timeout = 0.5\nretry = 1\ndelay_before_retry = 0.2\n";
    let reals: Vec<(IpAddr, String)> = lab
        .reals
        .iter()
        .map(|r| (r.addr, check.to_string()))
        .collect();
    let mut s = check_lab::config(lab, "", &reals);
    s.push_str(extra_services);
    s.push_str(&format!(
        "\n[bgp]\ncontrol_socket = \"{}\"\ninclude = \"{}\"\ndrain_time = 4\n\
         [[bgp.vip]]\naddress = \"{}\"\ncommunities = [\"65000:100\"]\nmed = 10\n{bgp}",
        bird.socket().display(),
        include.display(),
        lab.vip
    ));
    s
}

fn has_route(router: &Bird, vip: impl std::fmt::Display) -> bool {
    let want = format!("{vip}/32");
    router.routes().unwrap().contains(&want)
}

/// `show protocols` of `name`: its state (4th word) and since (5th).
fn since(bird: &Bird, name: &str) -> String {
    bird.protocol(name).unwrap()[4].clone()
}

fn established(router: &Bird) -> bool {
    router
        .protocol("director")
        .is_ok_and(|w| w.get(5).is_some_and(|s| s == "Established"))
}

fn bgp_status(lab: &DrLab) -> xlb::bgp::Status {
    xlb::bgp::read(&lab.pin_path)
        .unwrap()
        .expect("no BGP status file")
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        s.rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'))
    })
}

#[test]
fn announcements_follow_health_a_reload_keeps_the_session_and_drain_withdraws_first() {
    let mut lab = lab();
    let dir = common::test_dir("bgp-health");
    let router = start_router(&lab, &dir);
    let (bird, include) = start_director_bird(&lab, &dir);
    let path = dir.join("xlb.toml");
    std::fs::write(&path, config(&lab, &bird, &include, "", "")).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();

    wait_for("the BGP session", || established(&router));
    wait_for("the VIP's route at the router", || {
        has_route(&router, lab.vip)
    });
    let all = router.birdc(&["show", "route", "all"]).unwrap();
    assert!(all.contains("BGP.community: (65000,100)"), "{all}");
    assert!(all.contains("BGP.med: 10"), "{all}");
    // The generated include is valid bird2 syntax, inside the operator's config.
    let parsed = Command::new("bird")
        .args(["-p", "-c"])
        .arg(bird.dir().join("bird.conf"))
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    // And so is the README's example bird.conf around it.
    let example = include_str!("../../examples/bird-ecmp.conf").replace(
        "/var/lib/xlb/bird-vips.conf",
        &include.display().to_string(),
    );
    let example_path = dir.join("bird-ecmp.conf");
    std::fs::write(&example_path, example).unwrap();
    let parsed = Command::new("bird")
        .arg("-p")
        .arg("-c")
        .arg(&example_path)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    wait_for("the status to show the VIP announced", || {
        bgp_status(&lab).vips.first().is_some_and(|v| v.announced)
    });
    let status = lab.status(&xlb_bin()).unwrap();
    assert!(status.contains("announced"), "{status}");
    assert!(status.contains("session uplink"), "{status}");
    assert!(status.contains("Established"), "{status}");
    let json = common::succeed(
        Command::new(xlb_bin())
            .args(["status", "--json", "--pin-path"])
            .arg(&lab.pin_path),
    );
    let json: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(json["bgp"]["vips"][0]["announced"], true, "{json}");
    assert_eq!(json["bgp"]["vips"][0]["reason"], "healthy", "{json}");
    assert_eq!(json["bgp"]["sessions"][0]["name"], "uplink", "{json}");
    let metrics: SocketAddr = "127.0.0.1:9477".parse().unwrap();
    let samples = scrape::scrape(&lab.director, metrics).unwrap();
    let vip = lab.vip.to_string();
    assert_eq!(
        scrape::sample(&samples, "xlb_bgp_vip_announced", &[&vip, "healthy"]),
        Some(1.0)
    );
    assert_eq!(
        scrape::sample(&samples, "xlb_bgp_session_established", &["uplink"]),
        Some(1.0)
    );
    let session_since = since(&router, "director");

    // Every real's server dies: the checks take them out and the VIP is withdrawn.
    for r in &mut lab.reals {
        r.server.stop();
    }
    wait_for("the route withdrawn", || !has_route(&router, lab.vip));
    let s = bgp_status(&lab);
    assert!(!s.vips[0].announced && !s.vips[0].wanted, "{s:?}");
    assert_eq!(s.vips[0].why.word(), "no-usable-real", "{s:?}");
    let samples = scrape::scrape(&lab.director, metrics).unwrap();
    assert_eq!(
        scrape::sample(&samples, "xlb_bgp_vip_announced", &[&vip, "no-usable-real"]),
        Some(0.0)
    );

    // One comes back: announced again.
    let bind = SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), lab.port);
    lab.reals[0].server = serve_name(&lab.reals[0].ns, bind, &lab.reals[0].name).unwrap();
    wait_for("the route back", || has_route(&router, lab.vip));
    assert_eq!(
        since(&router, "director"),
        session_since,
        "withdrawing and announcing reset the BGP session"
    );

    // A reload adds a VIP: bird is reconfigured (a new protocol), and
    // neither the session nor the first VIP's protocol restarts.
    let first = xlb::bgp::include::protocol_name(lab.vip);
    let first_since = since(&bird, &first);
    let second = format!(
        "\n[[service]]\nvip = \"{VIP2}\"\nport = 80\nmethod = \"dr\"\n[[service.real]]\naddress = \"{}\"\n",
        lab.reals[0].addr
    );
    std::fs::write(
        &path,
        config(
            &lab,
            &bird,
            &include,
            &second,
            &format!("[[bgp.vip]]\naddress = \"{VIP2}\"\n"),
        ),
    )
    .unwrap();
    common::succeed(
        Command::new(xlb_bin())
            .arg("reload")
            .arg("--pid-file")
            .arg(agent.pid_file().unwrap()),
    );
    wait_for("the second VIP's route", || has_route(&router, VIP2));
    assert!(has_route(&router, lab.vip));
    assert_eq!(
        since(&router, "director"),
        session_since,
        "configure reset the session"
    );
    assert_eq!(
        since(&bird, &first),
        first_since,
        "configure restarted an unchanged VIP"
    );

    // Drain: the routes go while the agent still runs and still forwards
    // an established connection, then the agent stops by itself.
    let mut held = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
    assert_eq!(held.request(false).unwrap(), lab.reals[0].name);
    let pid = agent.pid();
    let pid_file = agent.pid_file().unwrap().to_path_buf();
    let drain = std::thread::spawn(move || {
        Command::new(xlb_bin())
            .arg("drain")
            .arg("--pid-file")
            .arg(pid_file)
            .output()
            .unwrap()
    });
    wait_for("both routes withdrawn", || {
        !has_route(&router, lab.vip) && !has_route(&router, VIP2)
    });
    assert!(
        alive(pid),
        "the agent stopped before the routes were withdrawn"
    );
    assert_eq!(bgp_status(&lab).vips[0].why.word(), "draining");
    assert_eq!(
        held.request(false).unwrap(),
        lab.reals[0].name,
        "the held connection broke during the drain"
    );
    assert_eq!(
        get_name(&lab.client, lab.vip_socket(), TIMEOUT).unwrap(),
        lab.reals[0].name,
        "the draining director stopped forwarding"
    );
    let out = drain.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("drained and stopped"));
    let log = agent.stop_logged().unwrap();
    let withdrawn = log
        .iter()
        .position(|l| l.contains("every VIP withdrawn from BGP"));
    let draining = log
        .iter()
        .position(|l| l.contains("draining: forwarding established flows"));
    assert!(withdrawn.is_some() && withdrawn < draining, "{log:#?}");
    assert_eq!(
        since(&router, "director"),
        session_since,
        "the drain reset the session"
    );
    // What bird reads next keeps them withdrawn.
    let text = std::fs::read_to_string(&include).unwrap();
    assert_eq!(text.matches("disabled yes;").count(), 2, "{text}");
    drop((bird, router));
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_killed_agent_leaves_the_routes_and_sigterm_withdraws_them() {
    let lab = lab();
    let dir = common::test_dir("bgp-kill");
    let router = start_router(&lab, &dir);
    let (bird, include) = start_director_bird(&lab, &dir);
    let path = dir.join("xlb.toml");
    std::fs::write(&path, config(&lab, &bird, &include, "", "")).unwrap();
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
    wait_for("the VIP's route at the router", || {
        has_route(&router, lab.vip)
    });

    // SIGKILL: nobody withdraws; bird keeps announcing what the surviving
    // data plane forwards.
    agent.kill().unwrap();
    std::thread::sleep(std::time::Duration::from_secs(2));
    assert!(has_route(&router, lab.vip), "the killed agent's route went");
    // The surviving data plane still forwards what bird announces.
    assert!(
        get_name(&lab.client, lab.vip_socket(), TIMEOUT).is_ok(),
        "the killed agent's data plane stopped forwarding"
    );

    // The next agent adopts the data plane and announces on; SIGTERM
    // (on_sigterm = "withdraw", the default) withdraws before it stops.
    let agent = Agent::start(&lab.director, &xlb_bin(), &path).unwrap();
    wait_for("the status to show the VIP announced", || {
        xlb::bgp::read(&lab.pin_path)
            .ok()
            .flatten()
            .is_some_and(|s| s.vips.first().is_some_and(|v| v.announced))
    });
    assert!(has_route(&router, lab.vip));
    agent.stop().unwrap();
    wait_for("the route withdrawn", || !has_route(&router, lab.vip));
    let text = std::fs::read_to_string(&include).unwrap();
    assert!(text.contains("disabled yes;"), "{text}");
    assert!(
        xlb::bgp::read(&lab.pin_path).unwrap().is_none(),
        "the stopped agent left its BGP status file"
    );
    drop((bird, router));
    let _ = std::fs::remove_dir_all(dir);
}

/// keepalived.conf has no BGP: `--bgp-config` adds `[bgp]` from a TOML
/// file beside it. The VIP belongs to a VRRP instance, so it is announced
/// only while that instance is Master: a track file putting it in Fault
/// withdraws the route, and clearing it announces it again.
#[test]
fn a_keepalived_conf_with_a_bgp_file_announces_only_as_vrrp_master() {
    let lab = lab();
    let dir = common::test_dir("bgp-vrrp");
    let router = start_router(&lab, &dir);
    let (bird, include) = start_director_bird(&lab, &dir);
    // VRRP, not the lab, puts the VIP on the director.
    let vip = format!("{}/32", lab.vip);
    lab.director
        .run("ip", &["addr", "del", &vip, "dev", "eth0"])
        .unwrap();
    let track = dir.join("fault");
    std::fs::write(&track, "0\n").unwrap();
    let reals: String = lab
        .reals
        .iter()
        .map(|r| {
            format!(
                "    real_server {} 80 {{\n        weight 1\n    }}\n",
                r.addr
            )
        })
        .collect();
    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        format!(
            "global_defs {{\n    router_id xlb_test\n    vrrp_version 3\n}}\n\
             vrrp_track_file tf {{\n    file \"{}\"\n    weight 0\n}}\n\
             vrrp_instance VI_1 {{\n    state BACKUP\n    interface eth0\n    virtual_router_id 51\n    \
             priority 150\n    advert_int 0.2\n    virtual_ipaddress {{\n        {}\n    }}\n    \
             track_file {{\n        tf\n    }}\n}}\n\
             virtual_server {} 80 {{\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n{reals}}}\n",
            track.display(),
            lab.vip,
            lab.vip
        ),
    )
    .unwrap();
    let bgp = dir.join("bgp.toml");
    std::fs::write(
        &bgp,
        format!(
            "[bgp]\ncontrol_socket = \"{}\"\ninclude = \"{}\"\n[[bgp.vip]]\naddress = \"{}\"\n",
            bird.socket().display(),
            include.display(),
            lab.vip
        ),
    )
    .unwrap();
    let pin = lab.pin_path.clone();
    let run: [&std::ffi::OsStr; 6] = [
        "--keepalived-conf".as_ref(),
        conf.as_os_str(),
        "--bgp-config".as_ref(),
        bgp.as_os_str(),
        "--pin-path".as_ref(),
        pin.as_os_str(),
    ];
    let never = std::sync::atomic::AtomicBool::new(false);
    let agent = Agent::start_run(
        &lab.director,
        &xlb_bin(),
        &[],
        &run,
        std::time::Duration::from_secs(30),
        &never,
    )
    .unwrap();
    wait_for("the VIP's route while VI_1 is Master", || {
        has_route(&router, lab.vip)
    });

    std::fs::write(&track, "1\n").unwrap();
    wait_for("the route withdrawn when VI_1 left Master", || {
        !has_route(&router, lab.vip)
    });
    let s = bgp_status(&lab);
    assert_eq!(
        s.vips[0].why,
        xlb::bgp::decide::Why::NotMaster {
            instance: "VI_1".into()
        },
        "{s:?}"
    );

    std::fs::write(&track, "0\n").unwrap();
    wait_for("the route back with VI_1 Master again", || {
        has_route(&router, lab.vip)
    });
    agent.stop().unwrap();
    wait_for("the route withdrawn at SIGTERM", || {
        !has_route(&router, lab.vip)
    });
    drop((bird, router));
    let _ = std::fs::remove_dir_all(dir);
}

/// Bad `[bgp]` input is refused by `xlb check` with its position and exit
/// status 1, in xlb's TOML and in the extra file beside a keepalived.conf.
#[test]
fn bgp_mistakes_are_refused_with_their_position() {
    let dir = common::test_dir("bgp-check");
    let toml = dir.join("nat.toml");
    std::fs::write(
        &toml,
        "[dataplane]\ninterfaces = [\"lo\"]\n\n[[service]]\nvip = \"192.0.2.1\"\nport = 80\nmethod = \"nat\"\n\
         [[service.real]]\naddress = \"198.51.100.1\"\n\n[bgp]\n[[bgp.vip]]\naddress = \"192.0.2.1\"\n",
    )
    .unwrap();
    let out = Command::new(xlb_bin())
        .arg("check")
        .arg("--config")
        .arg(&toml)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.starts_with(&format!(
            "{}:13:11: service TCP 192.0.2.1:80 forwards with NAT",
            toml.display()
        )),
        "{err}"
    );

    let conf = dir.join("keepalived.conf");
    std::fs::write(
        &conf,
        "virtual_server 192.0.2.1 80 {\n    lb_algo mh\n    lb_kind DR\n    protocol TCP\n    real_server 198.51.100.1 80 {\n    }\n}\n",
    )
    .unwrap();
    let extra = dir.join("bgp.toml");
    std::fs::write(
        &extra,
        "[bgp]\non_sigterm = \"later\"\n[[bgp.vip]]\naddress = \"192.0.2.9\"\n",
    )
    .unwrap();
    let out = Command::new(xlb_bin())
        .arg("check")
        .arg("--keepalived-conf")
        .arg(&conf)
        .arg("--bgp-config")
        .arg(&extra)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let e = extra.display();
    assert!(
        err.contains(&format!("{e}:2:14: `on_sigterm = \"later\"`")),
        "{err}"
    );
    assert!(
        err.contains(&format!("{e}:4:11: no service has VIP 192.0.2.9")),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// ECMP in miniature: the client's namespace is the router (its bird puts
/// the BGP routes into its kernel table as one multipath route, hashing
/// L4 ports), two directors run xlb and bird with the same config (mh over
/// the client's port, so each connection has its own real). Held
/// connections keep their real when a second director joins (the router
/// moves some of them to it, which picks them up mid-stream and finds the
/// same real in the same Maglev table) and when the first one drains away.
#[test]
fn held_connections_keep_their_real_when_a_director_joins_and_one_drains() {
    xlb_testbed::require_root().unwrap();
    let lab = DrLab::build(&LabOptions {
        weights: vec![1, 1, 1],
        peer_xdp: common::peer_pass(),
        standby_directors: 1,
        ..LabOptions::default()
    })
    .unwrap();
    let dir = common::test_dir("bgp-ecmp");
    let b = &lab.standby[0];
    lab.client
        .sysctl("net.ipv4.fib_multipath_hash_policy", "1")
        .unwrap();
    let router_conf = format!(
        "log stderr all;\nrouter id {c};\nprotocol device {{}}\n\
         protocol kernel {{\n  merge paths on;\n  ipv4 {{ import none; export all; }};\n}}\n{}{}",
        session(
            "dir_a",
            lab.client_addr,
            65000,
            lab.director_addr,
            65001,
            "import all; export none;"
        ),
        session(
            "dir_b",
            lab.client_addr,
            65000,
            b.addr,
            65001,
            "import all; export none;"
        ),
        c = lab.client_addr,
    );
    let router = Bird::start(&lab.client, &dir.join("router"), &router_conf).unwrap();
    let director_bird = |ns: &xlb_testbed::netns::Netns, addr: IpAddr, name: &str| {
        let bdir = dir.join(name);
        std::fs::create_dir_all(&bdir).unwrap();
        let include = bdir.join("xlb-vips.conf");
        std::fs::write(&include, xlb::bgp::include::EMPTY).unwrap();
        let conf = format!(
            "log stderr all;\nrouter id {addr};\nprotocol device {{}}\ninclude \"{}\";\n{}",
            include.display(),
            session(
                "uplink",
                addr,
                65001,
                lab.client_addr,
                65000,
                "import none; export filter xlb_export;"
            ),
        );
        (Bird::start(ns, &bdir, &conf).unwrap(), include)
    };
    let (bird_a, include_a) = director_bird(&lab.director, lab.director_addr, "dir-a");
    let (bird_b, include_b) = director_bird(&b.ns, b.addr, "dir-b");
    let pin_b = PathBuf::from(format!("{}-b", lab.pin_path.display()));
    let config = |pin: &Path, bird: &Bird, include: &Path| {
        let mut s = lab.agent_config_pinned(pin, "mh", "dr", "generic");
        s = s.replace(
            "method = \"dr\"\n",
            "method = \"dr\"\nscheduler_flags = [\"mh-port\"]\n",
        );
        s.push_str(&format!(
            "\n[bgp]\ncontrol_socket = \"{}\"\ninclude = \"{}\"\ndrain_time = 3\n[[bgp.vip]]\naddress = \"{}\"\n",
            bird.socket().display(),
            include.display(),
            lab.vip
        ));
        s
    };
    let path_a = dir.join("a.toml");
    std::fs::write(&path_a, config(&lab.pin_path, &bird_a, &include_a)).unwrap();
    let path_b = dir.join("b.toml");
    std::fs::write(&path_b, config(&pin_b, &bird_b, &include_b)).unwrap();
    let next_hops = || {
        lab.client
            .run("ip", &["-4", "route", "show", &format!("{}/32", lab.vip)])
            .unwrap()
            .matches(" via ")
            .count()
    };

    let agent_a = Agent::start(&lab.director, &xlb_bin(), &path_a).unwrap();
    wait_for("the route through director A", || next_hops() == 1);
    let mut held: Vec<(HttpConn, String)> = (0..40)
        .map(|_| {
            let mut c = HttpConn::open(&lab.client, lab.vip_socket(), TIMEOUT).unwrap();
            let real = c.request(false).unwrap();
            (c, real)
        })
        .collect();
    let reals: std::collections::BTreeSet<&String> = held.iter().map(|h| &h.1).collect();
    assert!(reals.len() > 1, "mh-port sent every connection to one real");
    let ask_all = |held: &mut Vec<(HttpConn, String)>, when: &str| {
        for (i, (c, real)) in held.iter_mut().enumerate() {
            let now = c
                .request(false)
                .unwrap_or_else(|e| panic!("{when}: connection {i} broke: {e:#}"));
            assert_eq!(&now, real, "{when}: connection {i} moved to another real");
        }
    };

    // B joins: two next hops, and some held connections now go through B.
    let agent_b = Agent::start(&b.ns, &xlb_bin(), &path_b).unwrap();
    wait_for("the multipath route through both directors", || {
        next_hops() == 2
    });
    ask_all(&mut held, "after B joined");
    let metrics: SocketAddr = "127.0.0.1:9477".parse().unwrap();
    let through_b = scrape::total(
        &scrape::scrape(&b.ns, metrics).unwrap(),
        "xlb_service_packets_total",
        &[],
    );
    assert!(
        through_b > 0,
        "the router sent no held connection through B"
    );

    // A drains: its route goes while it still runs, every connection
    // continues through B, and after A stopped too.
    let pid_file = agent_a.pid_file().unwrap().to_path_buf();
    let drain = std::thread::spawn(move || {
        Command::new(xlb_bin())
            .arg("drain")
            .arg("--pid-file")
            .arg(pid_file)
            .output()
            .unwrap()
    });
    let route = || {
        lab.client
            .run("ip", &["-4", "route", "show", &format!("{}/32", lab.vip)])
            .unwrap()
    };
    wait_for("only B's next hop left", || {
        let r = route();
        next_hops() == 1 && r.contains(&format!("via {} ", b.addr))
    });
    assert!(alive(agent_a.pid()), "A stopped before its route went");
    ask_all(&mut held, "while A drained");
    let drain = drain.join().unwrap();
    assert!(
        drain.status.success(),
        "{}",
        String::from_utf8_lossy(&drain.stderr)
    );
    ask_all(&mut held, "after A stopped");
    agent_a.stop().unwrap();
    agent_b.stop().unwrap();
    drop((bird_a, bird_b, router));
    let _ = std::fs::remove_dir_all(dir);
}
