//! The schedulers' agent side, pure: the tables the data plane reads (the
//! rr/wrr sequence, dh/sh buckets) and a reference model of every
//! scheduler's choice, which the unit tests pin to IPVS's behaviour and the
//! XDP fixtures compare the data plane against.

pub mod maglev;
pub mod model;
pub mod tables;
