//! Runs one SPF engine on one scenario of the SPF benchmark, N times, warm
//! cache: for counting instructions per check with callgrind
//! (`bench/callgrind-spf.sh`), which a busy machine does not disturb.
//!
//! `spf-callgrind <ours|mail-auth> <layered|esp> <N>`

#[path = "../benches/spf_common/mod.rs"]
mod spf_common;

use spf_common::{scenarios, Setup};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (Some(engine), Some(name), Some(count)) = (args.get(1), args.get(2), args.get(3)) else {
        eprintln!("usage: spf-callgrind <ours|mail-auth> <layered|esp> <N>");
        std::process::exit(2);
    };
    let count: usize = count.parse().expect("N");
    let scenarios = scenarios();
    let scenario = scenarios
        .iter()
        .find(|scenario| scenario.name == name)
        .expect("scenario");
    let setup = Setup::new();
    for _ in 0..count {
        match engine.as_str() {
            "ours" => {
                black_box(setup.ours(scenario));
            }
            "mail-auth" => {
                black_box(setup.mail_auth(scenario));
            }
            _ => panic!("engine: ours or mail-auth"),
        }
    }
}
