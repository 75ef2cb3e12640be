//! `xlb check` knows what `keepalived -t` knows without applying anything,
//! for both front ends, in a namespace whose interfaces the test makes:
//! an interface that does not exist, at the file:line:col that names it
//! (a VMAC the config makes need not exist), and an address owner
//! (priority 255) whose virtual address is not this node's.

mod common;

use common::xlb_bin;
use xlb_testbed::netns::Netns;

/// A namespace with eth0 (10.77.0.5/24), the end of a veth pair.
fn host() -> Netns {
    let ns = Netns::create("chk").unwrap();
    ns.run(
        "ip",
        &[
            "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
        ],
    )
    .unwrap();
    ns.run("ip", &["addr", "add", "10.77.0.5/24", "dev", "eth0"])
        .unwrap();
    for dev in ["lo", "eth0", "eth1"] {
        ns.run("ip", &["link", "set", dev, "up"]).unwrap();
    }
    ns
}

/// `xlb check` of `text` in `ns` (`--keepalived-conf` when `keepalived`):
/// whether it passed, and stderr with the file's path as FILE.
fn check(ns: &Netns, name: &str, text: &str, keepalived: bool) -> (bool, String) {
    let dir = common::test_dir("chkhost");
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    let flag = if keepalived {
        "--keepalived-conf"
    } else {
        "--config"
    };
    let out = ns
        .command(xlb_bin())
        .args(["check", flag])
        .arg(&path)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr).replace(&path.display().to_string(), "FILE");
    (out.status.success(), err)
}

fn toml(interface: &str, priority: u8, vip: &str, extra: &str) -> String {
    format!(
        "[dataplane]\ninterfaces = [\"eth0\"]\n\n[[vrrp_instance]]\nname = \"VI_1\"\ninterface = \"{interface}\"\nvirtual_router_id = 51\npriority = {priority}\nvirtual_ipaddress = [\"{vip}/24\"]\n{extra}"
    )
}

#[test]
fn toml_interfaces_must_exist_and_an_owner_must_own_its_addresses() {
    let ns = host();
    let (ok, err) = check(
        &ns,
        "good.toml",
        &toml("eth0", 100, "10.77.0.100", ""),
        false,
    );
    assert!(ok, "{err}");
    let (ok, err) = check(
        &ns,
        "iface.toml",
        &toml("nope0", 100, "10.77.0.100", ""),
        false,
    );
    assert!(!ok);
    assert!(
        err.contains("FILE:6:13: interface 'nope0' (vrrp_instance interface) does not exist here"),
        "{err}"
    );
    let (ok, err) = check(
        &ns,
        "track.toml",
        &toml(
            "eth0",
            100,
            "10.77.0.100",
            "track_interface = [{ name = \"gone1\" }]\n",
        ),
        false,
    );
    assert!(
        !ok && err.contains("FILE:10:29: interface 'gone1' (track_interface)"),
        "{err}"
    );
    // Only the XDP data plane attaches: under IPVS (or auto, which falls
    // back to it) the interfaces list names nothing that must exist.
    let ipvs = toml("eth0", 100, "10.77.0.100", "").replace(
        "interfaces = [\"eth0\"]",
        "kind = \"auto\"\ninterfaces = [\"nope1\"]",
    );
    let (ok, err) = check(&ns, "auto.toml", &ipvs, false);
    assert!(ok, "{err}");
    // A VMAC the config makes need not exist yet.
    let (ok, err) = check(
        &ns,
        "vmac.toml",
        &toml(
            "eth0",
            100,
            "10.77.0.100",
            "use_vmac = \"vrrp.51\"\nvirtual_routes = [{ to = \"10.1.0.0/16\", dev = \"vrrp.51\" }]\n",
        ),
        false,
    );
    assert!(ok, "{err}");
    let (ok, err) = check(
        &ns,
        "owner.toml",
        &toml("eth0", 255, "10.77.0.100", ""),
        false,
    );
    assert!(!ok);
    assert!(
        err.contains("FILE:9:22: priority 255 makes this node the owner of 10.77.0.100, but 10.77.0.100 is not one of its addresses"),
        "{err}"
    );
    let (ok, err) = check(&ns, "own.toml", &toml("eth0", 255, "10.77.0.5", ""), false);
    assert!(ok, "the node's own address: {err}");
}

#[test]
fn keepalived_conf_owner_must_own_its_addresses() {
    let ns = host();
    let conf = |vip: &str| {
        format!(
            "vrrp_instance VI_1 {{\n    interface eth0\n    virtual_router_id 51\n    priority 255\n    virtual_ipaddress {{\n        {vip}/24\n    }}\n}}\n"
        )
    };
    let (ok, err) = check(&ns, "owner.conf", &conf("10.77.0.100"), true);
    assert!(!ok);
    assert!(
        err.contains("FILE:6:9: priority 255 makes this node the owner of 10.77.0.100"),
        "{err}"
    );
    let (ok, err) = check(&ns, "own.conf", &conf("10.77.0.5"), true);
    assert!(ok, "{err}");
}
