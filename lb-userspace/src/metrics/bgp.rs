//! BGP announcements (`[bgp]`): per VIP whether bird announces it and why,
//! per bird BGP session whether it is established, and whether bird answers;
//! from the speaker's last round (`bgp::Board`), nothing without `[bgp]`.

use super::family::family;
use prometheus_client::{
    collector::Collector, encoding::DescriptorEncoder, metrics::MetricType::Gauge,
};

#[derive(Debug)]
pub struct BgpCollector {
    board: crate::bgp::Board,
}

impl BgpCollector {
    pub fn new(board: crate::bgp::Board) -> BgpCollector {
        BgpCollector { board }
    }
}

impl Collector for BgpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(s) = self.board.get() else {
            return Ok(());
        };
        let vips: Vec<_> = s
            .vips
            .iter()
            .map(|v| {
                (
                    vec![
                        ("vip", v.vip.to_string()),
                        ("reason", v.why.word().to_string()),
                    ],
                    u64::from(v.announced),
                )
            })
            .collect();
        family(
            &mut encoder,
            "xlb_bgp_vip_announced",
            "1 while bird announces the VIP (its protocol is up); reason: why the agent wants it so",
            Gauge,
            &vips,
        )?;
        let sessions: Vec<_> = s
            .sessions
            .iter()
            .map(|p| {
                (
                    vec![
                        ("protocol", p.name.clone()),
                        (
                            "state",
                            p.info
                                .split_whitespace()
                                .next()
                                .unwrap_or(&p.state)
                                .to_string(),
                        ),
                    ],
                    u64::from(p.established()),
                )
            })
            .collect();
        family(
            &mut encoder,
            "xlb_bgp_session_established",
            "1 while bird's BGP session is Established",
            Gauge,
            &sessions,
        )?;
        family(
            &mut encoder,
            "xlb_bgp_bird_up",
            "1 while bird's control socket answers the agent",
            Gauge,
            &[(vec![], u64::from(s.bird == "connected"))],
        )
    }
}
