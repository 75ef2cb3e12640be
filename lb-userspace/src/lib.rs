//! The xlb agent as a library: the binary in `main.rs` and the integration
//! tests both drive it through these modules.

pub mod agent;
pub mod alert;
pub mod bgp;
pub mod caps;
pub mod check;
pub mod cli;
pub mod dataplane;
pub mod decap;
pub mod dump;
pub mod fault;
pub mod ipvs;
pub mod ipvsadm;
pub mod load;
pub mod logging;
pub mod manpage;
pub mod metrics;
pub mod neigh;
pub mod net;
pub mod pidfile;
pub mod reload;
pub mod runfiles;
pub mod script;
pub mod sdnotify;
pub mod snapshot;
pub mod status;
pub mod vocab;
pub mod vrrp;

// The pure crates, under the names the agent's modules use.
pub use lb_config::{self as config, keepalived};
pub use lb_sched::{self as sched, maglev};

/// Where the XDP object built by `cargo xtask build-ebpf` was read from at
/// compile time (or was looked for, when the build embedded none).
pub const EBPF_OBJECT_PATH: &str = env!("XLB_EBPF_OBJECT_WANTED");

/// That object, embedded so the agent is one file; empty when the build
/// found none ([`require_object`]).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("XLB_EBPF_OBJECT"));

/// `xlb decap`'s XDP object (built alongside the director's), embedded too.
pub static DECAP_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("XLB_DECAP_OBJECT"));
/// Where it was read from at compile time.
pub const DECAP_OBJECT_PATH: &str = env!("XLB_DECAP_OBJECT_WANTED");

/// `object`, or the reason this binary cannot load it: built without it
/// (`build.rs` warns then instead of failing, so the library and its unit
/// tests build without the BPF toolchain).
pub fn require_object(object: &'static [u8], path: &str) -> anyhow::Result<&'static [u8]> {
    if object.is_empty() {
        anyhow::bail!(
            "this xlb was built without its XDP object ({path} was missing at build time): run `cargo xtask build-ebpf`, then build xlb again"
        );
    }
    Ok(object)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_build_without_the_object_refuses_to_load_it_and_says_why() {
        let e = super::require_object(&[], "/x/lb-ebpf")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("built without its XDP object (/x/lb-ebpf"),
            "{e}"
        );
        assert!(e.contains("cargo xtask build-ebpf"), "{e}");
        static OBJ: [u8; 3] = [1, 2, 3];
        assert_eq!(super::require_object(&OBJ, "p").unwrap(), &OBJ);
    }
}
