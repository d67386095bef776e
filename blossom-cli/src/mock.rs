//! `blossom mock`: the embedded multi-region mock server on loopback, with fault flags.
//!
//! It exists so the client (and this CLI) can be tried offline in seconds, and so a failure can
//! be staged on purpose: `--fail 0:503` makes the first region answer 503 while the others stay
//! healthy. It prints one `NAME URL` line per region on stdout (for people and for scripts that
//! start it), then serves until killed.

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use blossom_mock::{Behavior, MockServer};

use crate::cli::MockArgs;
use crate::failure::{Exit, Failure, io_failure};

/// The fault list of `blossom mock --help`.
pub(crate) const FAULTS_HELP: &str = "\
Behaviors for --fail REGION_INDEX:BEHAVIOR (region-a is index 0):
  NNN           that HTTP error status with a Pollinations error body (400..=599), e.g. 503
  429[=SECS]    rate limited, with Retry-After SECS (default 1)
  hang          accept the request and never answer
  stall         send the headers, then nothing
  slow[=MS]     a body that drips one byte every MS (default 100)
  latency=MS    healthy, but every answer waits MS first
  reset         part of the body, then a connection reset
  empty         an empty 200
  truncated     a 200 shorter than its Content-Length
  invalid-json  a 200 with broken JSON
  ok            healthy (the default)";

/// The name of region `index`: `region-a`, `region-b`, ...
pub(crate) fn region_name(index: usize) -> String {
    let letter = char::from(b'a' + (index % 26) as u8);
    format!("region-{letter}")
}

/// Parses `REGION_INDEX:BEHAVIOR` (see [`FAULTS_HELP`]).
pub(crate) fn parse_fault(value: &str) -> Result<(usize, Behavior), String> {
    let (index, behavior) =
        value.split_once(':').ok_or_else(|| format!("expected REGION_INDEX:BEHAVIOR (e.g. 0:503), got `{value}`"))?;
    let index = index.trim().parse().map_err(|_| format!("region index must be a number, got `{index}`"))?;
    Ok((index, parse_behavior(behavior.trim())?))
}

fn parse_behavior(value: &str) -> Result<Behavior, String> {
    let (name, arg) = match value.split_once('=') {
        Some((name, arg)) => (name, Some(arg)),
        None => (value, None),
    };
    let number = |default: Option<u64>| -> Result<u64, String> {
        match (arg, default) {
            (Some(a), _) => a.parse().map_err(|_| format!("`{name}=` needs a whole number, got `{a}`")),
            (None, Some(d)) => Ok(d),
            (None, None) => Err(format!("`{name}` needs a value, e.g. `{name}=500`")),
        }
    };
    let no_arg = |behavior: Behavior| match arg {
        Some(a) => Err(format!("`{name}` takes no value, got `{a}`")),
        None => Ok(behavior),
    };
    match name {
        "429" => Ok(Behavior::RateLimited { retry_after_secs: number(Some(1))? }),
        "hang" => no_arg(Behavior::Hang),
        "stall" => no_arg(Behavior::HangAfterHeaders),
        "slow" => Ok(Behavior::SlowDrip { every: Duration::from_millis(number(Some(100))?) }),
        "latency" => Ok(Behavior::Healthy { base: Duration::from_millis(number(None)?), jitter: Duration::ZERO }),
        "reset" => no_arg(Behavior::ResetMidBody),
        "empty" => no_arg(Behavior::Empty200),
        "truncated" => no_arg(Behavior::Truncated),
        "invalid-json" => no_arg(Behavior::InvalidJson),
        "ok" => no_arg(Behavior::default()),
        status => match status.parse::<u16>() {
            Ok(code @ 400..=599) => no_arg(Behavior::Status(code)),
            _ => Err(format!(
                "unknown behavior `{value}`; use an error status (400..=599), 429[=SECS], hang, stall, slow[=MS], \
                 latency=MS, reset, empty, truncated, invalid-json or ok"
            )),
        },
    }
}

/// Binds every region, prints their URLs, then serves until Ctrl-C (or a kill).
pub(crate) async fn run(args: &MockArgs) -> Result<(), Failure> {
    let regions = usize::from(args.regions);
    if let Some((index, _)) = args.fail.iter().find(|(index, _)| *index >= regions) {
        return Err(Failure::usage(
            format!("--fail names region index {index}, but there are {regions} regions (0..={})", regions - 1),
            "use an index below --regions, or raise --regions",
        ));
    }
    let mut listening = Vec::with_capacity(regions);
    let mut stdout = std::io::stdout();
    for index in 0..regions {
        let server = MockServer::new(args.seed.wrapping_add(index as u64));
        for (_, behavior) in args.fail.iter().filter(|(i, _)| *i == index) {
            server.set_behavior(behavior.clone());
        }
        let port = if args.port == 0 {
            0
        } else {
            u16::try_from(usize::from(args.port) + index).map_err(|_| {
                Failure::usage(format!("--port {} leaves no port for region {index}", args.port), "use a lower --port")
            })?
        };
        let (addr, task) = server.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await.map_err(|e| {
            Failure::new(
                Exit::Other,
                format!("cannot listen on 127.0.0.1:{port}: {e}"),
                "pick another --port, or --port 0 for free ports",
            )
        })?;
        writeln!(stdout, "{} http://{addr}", region_name(index)).map_err(|e| io_failure("cannot write stdout", e))?;
        listening.push((region_name(index), addr, task));
    }
    stdout.flush().map_err(|e| io_failure("cannot write stdout", e))?;
    let list: Vec<String> = listening.iter().map(|(name, addr, _)| format!("{name}=http://{addr}")).collect();
    note!("blossom mock: serving; use BLOSSOM_REGIONS={} (Ctrl-C stops)", list.join(","));
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling here: serve until killed.
        std::future::pending::<()>().await;
    }
    for (_, _, task) in listening {
        task.abort();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faults_parse() {
        let ms = Duration::from_millis;
        assert_eq!(parse_fault("0:503"), Ok((0, Behavior::Status(503))));
        assert_eq!(parse_fault("1:429"), Ok((1, Behavior::RateLimited { retry_after_secs: 1 })));
        assert_eq!(parse_fault("1:429=7"), Ok((1, Behavior::RateLimited { retry_after_secs: 7 })));
        assert_eq!(parse_fault("2:hang"), Ok((2, Behavior::Hang)));
        assert_eq!(parse_fault("0:slow"), Ok((0, Behavior::SlowDrip { every: ms(100) })));
        assert_eq!(parse_fault("0:latency=250"), Ok((0, Behavior::Healthy { base: ms(250), jitter: Duration::ZERO })));
        assert_eq!(parse_fault("0:reset"), Ok((0, Behavior::ResetMidBody)));
        assert_eq!(parse_fault("0:empty"), Ok((0, Behavior::Empty200)));
        for bad in ["503", "x:503", "0:200", "0:latency", "0:hang=3", "0:nonsense", "0:slow=fast"] {
            assert!(parse_fault(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn regions_are_lettered() {
        assert_eq!(region_name(0), "region-a");
        assert_eq!(region_name(25), "region-z");
    }
}
