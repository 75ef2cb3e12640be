//! `xlb ipvsadm`: ipvsadm's listing (`-L -n`, `-c`, `-Z`, `--stats`, `--rate`,
//! `--exact`, `--thresholds`, `--persistent-conn`, `-t/-u/-f`) of whichever
//! data plane runs, printed exactly as ipvsadm 1.31 prints it.

pub mod args;
pub mod render;
pub mod source;
pub mod zero;

use crate::ipvs::{DestEntry, ServiceEntry};
use anyhow::{Result, bail};
use args::IpvsadmArgs;

/// The state a listing shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listing {
    /// IPVS's version code (0x010201 is 1.2.1).
    pub version: u32,
    pub conn_tab_size: u32,
    pub services: Vec<(ServiceEntry, Vec<DestEntry>)>,
}

/// The text `xlb ipvsadm ARGS` prints.
pub fn run(args: &IpvsadmArgs) -> Result<String> {
    let pin = crate::snapshot::pin_dir(args.pin_path.as_deref(), args.config.as_deref())?;
    if args.timeout {
        return Ok(render::timeouts(source::timeouts(&pin)?));
    }
    if args.daemon {
        return Ok(render::daemons(&source::daemons(&pin)?));
    }
    if args.zero {
        zero::zero(&pin, args.filter().as_ref())?;
        return Ok(String::new());
    }
    if args.connection {
        let flows = crate::snapshot::Running::find(&pin).flows()?;
        return Ok(render::connections(&flows, true));
    }
    let listing = source::read(&pin)?;
    let format = render::Format {
        view: args.view(),
        exact: args.exact,
        only: args.filter(),
    };
    match render::render(&listing, format) {
        Some(text) => Ok(text),
        None => bail!(
            "No such service: {}",
            args::describe(&format.only.expect("only a filter finds nothing"))
        ),
    }
}
