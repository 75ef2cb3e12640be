//! One metric family written from its samples: the helper every
//! collector of the agent encodes with.

use prometheus_client::{
    encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder},
    metrics::{MetricType, counter::ConstCounter, gauge::ConstGauge},
};

/// A sample's labels, in order.
pub type Labels = Vec<(&'static str, String)>;

/// One family: its samples, each a label set and a value.
pub fn family(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    samples: &[(Labels, u64)],
) -> Result<(), std::fmt::Error> {
    let value = |sample: MetricEncoder, value: u64| match kind {
        MetricType::Counter => ConstCounter::new(value).encode(sample),
        _ => ConstGauge::new(i64::try_from(value).unwrap_or(i64::MAX)).encode(sample),
    };
    let mut metric = encoder.encode_descriptor(name, help, None, kind)?;
    // A lone unlabelled sample is written `name value`, not `name{} value`.
    if let [(labels, v)] = samples
        && labels.is_empty()
    {
        return value(metric, *v);
    }
    for (labels, v) in samples {
        value(metric.encode_family(labels)?, *v)?;
    }
    Ok(())
}
