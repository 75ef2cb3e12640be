//! Next hops of thousands of reals: each pass over them (start, every 5 s
//! refresh) reads the neighbour table once, whatever the number of reals,
//! as the agent's own counters show (`xlb_neighbour_dumps_total` against
//! `xlb_next_hop_passes_total`). The table holds a permanent entry per
//! real, plus reals nobody answers for, which stay unreachable.

mod common;

use common::xlb_bin;
use std::{
    fmt::Write as _,
    net::Ipv4Addr,
    path::PathBuf,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};
use xlb_testbed::{
    agent::Agent,
    netns::Netns,
    scrape::{self, Samples, total},
};

const SERVICES: u32 = 50;
const REALS_PER_SERVICE: u32 = 100;
/// Reals without a neighbour entry that nobody answers ARP for.
const SILENT: u32 = 5;
/// Generous bounds, not measurements.
const START: Duration = Duration::from_secs(120);
const SETTLE: Duration = Duration::from_secs(60);
const LISTEN: &str = "127.0.0.1:9477";
/// The start-up pass waits 3 s for missing entries, reading the table every 100 ms.
const MOST_START_DUMPS: u64 = 1 + 3_000 / 100 + 1;

fn real(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 64, (n / 250) as u8, (n % 250 + 1) as u8)
}

fn silent(n: u32) -> Ipv4Addr {
    Ipv4Addr::new(10, 65, 0, (n + 1) as u8)
}

fn counters(m: &Samples) -> (u64, u64) {
    (
        total(m, "xlb_next_hop_passes_total", &[]),
        total(m, "xlb_neighbour_dumps_total", &[]),
    )
}

#[test]
fn a_pass_over_thousands_of_reals_reads_the_neighbour_table_once() {
    xlb_testbed::require_root().unwrap();
    let ns = Netns::create("hops").unwrap();
    ns.run("ip", &["link", "set", "lo", "up"]).unwrap();
    ns.run(
        "ip",
        &["link", "add", "h0", "type", "veth", "peer", "name", "h1"],
    )
    .unwrap();
    for dev in ["h0", "h1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    ns.run("ip", &["addr", "add", "10.64.255.254/15", "dev", "h0"])
        .unwrap();
    let dir = common::test_dir("hops");
    let reals = SERVICES * REALS_PER_SERVICE;
    let mut batch = String::new();
    for n in 0..reals {
        let _ = writeln!(
            batch,
            "neigh replace {} lladdr 02:64:00:00:{:02x}:{:02x} dev h0 nud permanent",
            real(n),
            n / 256,
            n % 256
        );
    }
    let batch_file = dir.join("neigh.batch");
    std::fs::write(&batch_file, batch).unwrap();
    ns.run("ip", &["-batch", &batch_file.to_string_lossy()])
        .unwrap();

    let pin = PathBuf::from(format!("/sys/fs/bpf/xlb-hops-{}", std::process::id()));
    let mut text = format!(
        "[dataplane]\ninterfaces = [\"h0\"]\nxdp_mode = \"generic\"\npin_path = \"{}\"\nmax_services = 64\nmax_reals = 8192\n\n[metrics]\nlisten = \"{LISTEN}\"\n",
        pin.display()
    );
    for s in 0..SERVICES {
        let _ = write!(
            text,
            "\n[[service]]\nvip = \"10.250.0.{}\"\nport = 80\nscheduler = \"rr\"\nmethod = \"dr\"\n",
            s + 1
        );
        for r in 0..REALS_PER_SERVICE {
            let _ = write!(
                text,
                "[[service.real]]\naddress = \"{}\"\n",
                real(s * REALS_PER_SERVICE + r)
            );
        }
        if s == 0 {
            for n in 0..SILENT {
                let _ = write!(text, "[[service.real]]\naddress = \"{}\"\n", silent(n));
            }
        }
    }
    let path = dir.join("xlb.toml");
    std::fs::write(&path, text).unwrap();
    let never = AtomicBool::new(false);
    let agent = Agent::start_within(&ns, &xlb_bin(), &path, &[], START, &never).unwrap();
    let addr = LISTEN.parse().unwrap();
    let scrape = || scrape::scrape(&ns, addr).unwrap();

    let first = scrape();
    let (passes, dumps) = counters(&first);
    assert!(passes >= 1, "no pass at start");
    // The start-up pass waited for the silent reals: a dump per 100 ms, not
    // per real (and a refresh that came meanwhile, one dump; checked below).
    let at_start = dumps - (passes - 1);
    assert!(
        (2..=MOST_START_DUMPS).contains(&at_start),
        "{at_start} neighbour dumps at start"
    );
    assert_eq!(
        total(&first, "xlb_real_reachable", &[]),
        u64::from(reals),
        "every real with an entry is reachable"
    );
    let unreachable = agent
        .log()
        .iter()
        .filter(|l| l.contains("real server unreachable, left out of scheduling"))
        .count();
    assert_eq!(unreachable, SILENT as usize);

    // Refreshes (every 5 s) wait for nothing: exactly one dump each.
    let deadline = Instant::now() + SETTLE;
    let last = loop {
        let m = scrape();
        if counters(&m).0 >= passes + 2 {
            break m;
        }
        assert!(Instant::now() < deadline, "no two refreshes in {SETTLE:?}");
        std::thread::sleep(Duration::from_millis(500));
    };
    let (now_passes, now_dumps) = counters(&last);
    assert_eq!(
        now_dumps - dumps,
        now_passes - passes,
        "refreshes read the neighbour table more than once each"
    );
    agent.stop().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}
