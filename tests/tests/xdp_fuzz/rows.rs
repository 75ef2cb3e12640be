//! The model's self-check: every row of the fixture table
//! (`xlb_testbed::fixtures`) that the model covers, run through the model
//! instead of the program, must give the row's action and output. The rows
//! are checked against the program in xdp_fixtures.rs and xdp_tun.rs, so a
//! model that drifts from them fails here, before it can mislead a fuzz run.
//! Pure: no namespace, no BPF; interface indices are symbolic.

use crate::model::{Fib, Method, Model, Real, Service};
use std::net::IpAddr;
use xlb_testbed::fixtures::{self, Case, Count, Port, REAL_A_MAC, RIP4, RIP6, Setup, XDP_ABORTED};

/// Symbolic ifindexes: `lo`, the veth `fa` (`Other` in one-armed
/// setups), `fb`, and the one no interface has.
fn index(port: Port) -> u32 {
    match port {
        Port::Lo => 1,
        Port::Other | Port::Fa => 2,
        Port::Fb => 3,
        Port::Missing => 9999,
    }
}

/// Why the model does not cover `case`, if it does not.
fn unmodelled(case: &Case) -> Option<&'static str> {
    if case.action == XDP_ABORTED {
        return Some("missing interface data or tunnel source (the model assumes both)");
    }
    if case.also.contains(&Count::TooBig) || over_tunnel_mtu(case) {
        return Some("the tunnel MTU (the fuzzer's is never reached)");
    }
    None
}

/// Whether the row's frame, tunnelled to its service's real, would exceed
/// the MTU of the interface it leaves by.
fn over_tunnel_mtu(case: &Case) -> bool {
    let l3 = 14;
    case.setup.services.iter().any(|s| match &s.real {
        Some(fixtures::Real::Tun {
            addr,
            gue_port,
            via,
            ..
        }) => {
            let outer = if addr.is_ipv6() { 40 } else { 20 };
            let gue = if gue_port.is_some() { 12 } else { 0 };
            case.input.len() - l3 + outer + gue > usize::from(case.setup.iface(*via).1)
        }
        _ => false,
    })
}

/// The model of a director programmed with `setup`.
fn model_of(setup: &Setup) -> Model {
    let services = (0u32..)
        .zip(&setup.services)
        .map(|(id, s)| {
            let real = s.real.as_ref().map(|r| {
                let (addr, port, mac, gue_port, via) = match *r {
                    fixtures::Real::Dr { mac, via, .. } => (s.vip, 0, mac, None, Some(via)),
                    fixtures::Real::Nat { addr, port } => (addr, port, REAL_A_MAC, None, None),
                    fixtures::Real::Tun {
                        addr,
                        mac,
                        via,
                        gue_port,
                    } => (addr, s.port, mac, gue_port, Some(via)),
                };
                Real {
                    id: id + 1,
                    addr,
                    port,
                    mac,
                    gue_port,
                    egress: via.map(|v| (index(v), setup.iface(v).0)),
                }
            });
            let slots = xlb_testbed::xdp::TABLE as usize;
            Service {
                id,
                vip: s.vip,
                port: s.port,
                proto: s.proto,
                active: s.active,
                hash_port: false,
                method: match s.method {
                    lb_common::method::NAT => Method::Nat,
                    lb_common::method::TUN => Method::Tun,
                    _ => Method::Dr,
                },
                table: vec![real.as_ref().map(|_| 0); slots],
                reals: real.into_iter().collect(),
            }
        })
        .collect();
    // The two-armed namespace's neighbours behind `fa`.
    let fib = Fib {
        fa: index(Port::Fa),
        fb: index(Port::Fb),
        reals: [IpAddr::from(RIP4), IpAddr::from(RIP6)]
            .into_iter()
            .map(|a| (a, REAL_A_MAC))
            .collect(),
    };
    let mut model = Model::new(services, fib);
    let sources = &setup.tun_sources;
    if let (Some(v4), Some(v6)) = (
        sources.iter().find(|a| a.is_ipv4()),
        sources.iter().find(|a| a.is_ipv6()),
    ) {
        model.tun_sources = (*v4, *v6);
    }
    model
}

#[test]
fn the_model_agrees_with_every_fixture_row_it_models() {
    let rows = fixtures::table();
    let (mut checked, mut skipped, mut wrong) = (0, Vec::new(), Vec::new());
    for case in &rows {
        if let Some(why) = unmodelled(case) {
            skipped.push(format!("{}: {why}", case.name));
            continue;
        }
        let mut model = model_of(&case.setup);
        for (port, frame) in &case.before {
            model.expect(frame, index(*port));
        }
        let (action, out) = model.expect(&case.input, index(case.ingress));
        checked += 1;
        if action != case.action || case.expected().is_some_and(|want| want != out) {
            wrong.push(format!(
                "{}: model gives action {action} (row: {}){}",
                case.name,
                case.action,
                if action == case.action {
                    ", another frame"
                } else {
                    ""
                }
            ));
        }
    }
    eprintln!(
        "{checked} of {} rows checked against the model; not modelled:\n  {}",
        rows.len(),
        skipped.join("\n  ")
    );
    assert!(
        wrong.is_empty(),
        "the model and the fixture table disagree:\n{}",
        wrong.join("\n")
    );
    // The unmodelled rows are the few named above, not a growing share.
    assert!(skipped.len() <= 8, "{} rows not modelled", skipped.len());
}
