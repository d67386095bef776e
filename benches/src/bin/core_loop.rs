//! pool-core's per-request path (the `core_path` bench's), run a given number of times after
//! the warmup, for callgrind to count: `core_loop on|off ITERATIONS`. `cargo xtask bench
//! --instructions` runs it twice per configuration and takes the difference, which leaves out
//! the start-up; the count does not move with the machine's load as nanoseconds do.

use benches::core_path::{all_off, all_on, request, warm_core};
use pool_core::Time;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (config, iterations) = match args.as_slice() {
        [config, n] => (config.as_str(), n.parse::<u64>().ok()),
        _ => ("", None),
    };
    let config = match config {
        "on" => all_on(),
        "off" => all_off(),
        _ => usage(),
    };
    let Some(iterations) = iterations else { usage() };
    let mut now = Time::ZERO;
    let mut core = warm_core(config, &mut now);
    for _ in 0..iterations {
        request(&mut core, &mut now);
    }
    std::hint::black_box(&core);
}

fn usage() -> ! {
    eprintln!("usage: core_loop on|off ITERATIONS");
    std::process::exit(2)
}
