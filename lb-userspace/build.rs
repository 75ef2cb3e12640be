//! Points `XLB_EBPF_OBJECT` and `XLB_DECAP_OBJECT` at the XDP objects so
//! `lib.rs` can embed them. A missing object is a warning, not a failed
//! build: the library and its unit tests do not need it, and an agent built
//! without it says so when it would load it (`xlb::require_object`).
use std::path::PathBuf;

fn object(env: &str, file: &str) {
    println!("cargo:rerun-if-env-changed={env}");
    let path = match std::env::var_os(env) {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/ebpf/bpfel-unknown-none/release")
            .join(file),
    };
    println!("cargo:rerun-if-changed={}", path.display());
    let embedded = if path.exists() {
        path.clone()
    } else {
        println!(
            "cargo:warning=the XDP object {} is missing: this build embeds none (run `cargo xtask build-ebpf` first, or use `cargo xtask run`/`test`)",
            path.display()
        );
        let empty =
            PathBuf::from(std::env::var_os("OUT_DIR").unwrap()).join(format!("{file}.missing"));
        std::fs::write(&empty, b"").unwrap();
        empty
    };
    println!("cargo:rustc-env={env}={}", embedded.display());
    println!("cargo:rustc-env={env}_WANTED={}", path.display());
}

fn main() {
    object("XLB_EBPF_OBJECT", "lb-ebpf");
    object("XLB_DECAP_OBJECT", "xlb-decap");
}
