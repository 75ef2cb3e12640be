//! The xlb agent as a library: the binary in `main.rs` and the integration
//! tests both drive it through these modules.

pub mod agent;
pub mod alert;
pub mod caps;
pub mod check;
pub mod cli;
pub mod config;
pub mod dataplane;
pub mod decap;
pub mod dump;
pub mod ipvs;
pub mod ipvsadm;
pub mod keepalived;
pub mod load;
pub mod logging;
pub mod maglev;
pub mod manpage;
pub mod metrics;
pub mod neigh;
pub mod net;
pub mod pidfile;
pub mod reload;
pub mod sched;
pub mod script;
pub mod sdnotify;
pub mod snapshot;
pub mod status;
pub mod vocab;
pub mod vrrp;

/// Where the XDP object built by `cargo xtask build-ebpf` was read from at compile time.
pub const EBPF_OBJECT_PATH: &str = env!("XLB_EBPF_OBJECT");

/// That object, embedded so the agent is one file.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("XLB_EBPF_OBJECT"));

/// `xlb decap`'s XDP object (built alongside the director's), embedded too.
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("XLB_DECAP_OBJECT"));
/// Where it was read from at compile time.
pub const DECAP_OBJECT_PATH: &str = env!("XLB_DECAP_OBJECT");
