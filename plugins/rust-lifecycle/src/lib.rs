//! rust-lifecycle: exercises every lifecycle hook (same behaviour as plugins/c-lifecycle).
//!
//! - start: counts the instance's starts (the `starts` command reports them)
//! - health: from config key `health`: `ready` (or no key) -> 0, `notready` -> 1,
//!   `unhealthy` -> 2; any other value -> 2
//! - tick: counts ticks (the `ticks` command reports them)
//! - snapshot: the counter as a little-endian u64 (8 bytes)
//! - restore: loads that counter; any other length fails the start
//! - stop: logs `stop: counter=N grace_ms=G` at info level
//!
//! Request handler commands (surrounding ASCII whitespace ignored): `inc` increments the
//! counter and returns its new value in decimal, `state` returns the counter, `starts` and
//! `ticks` their counts, all in decimal. Anything else fails with code 2 and message
//! `unknown command: ...`.

use std::cell::Cell;
use std::time::{Duration, SystemTime};

use wasmpod::{err, Health};

thread_local! {
    static COUNTER: Cell<u64> = Cell::new(0);
    static STARTS: Cell<u64> = Cell::new(0);
    static TICKS: Cell<u64> = Cell::new(0);
}

fn bump(c: &'static std::thread::LocalKey<Cell<u64>>) -> u64 {
    c.with(|c| {
        c.set(c.get() + 1);
        c.get()
    })
}

wasmpod::handle!(command);
wasmpod::start!(on_start);
wasmpod::health!(on_health);
wasmpod::tick!(on_tick);
wasmpod::snapshot!(on_snapshot);
wasmpod::restore!(on_restore);
wasmpod::stop!(on_stop);

fn on_start() -> wasmpod::Result<()> {
    let n = bump(&STARTS);
    wasmpod::info!("start: starts={}", n);
    Ok(())
}

fn on_health() -> Health {
    match wasmpod::config("health").as_deref() {
        None | Some("ready") => Health::Healthy,
        Some("notready") => Health::NotReady,
        Some(_) => Health::Unhealthy,
    }
}

fn on_tick(_now: SystemTime) -> wasmpod::Result<()> {
    bump(&TICKS);
    Ok(())
}

fn on_snapshot() -> wasmpod::Result<[u8; 8]> {
    Ok(COUNTER.with(Cell::get).to_le_bytes())
}

fn on_restore(state: &[u8]) -> wasmpod::Result<()> {
    let bytes: [u8; 8] = state
        .try_into()
        .map_err(|_| err!(1, "restore: want 8 bytes of state, got {}", state.len()))?;
    COUNTER.with(|c| c.set(u64::from_le_bytes(bytes)));
    Ok(())
}

fn on_stop(grace: Duration) -> wasmpod::Result<()> {
    wasmpod::info!("stop: counter={} grace_ms={}", COUNTER.with(Cell::get), grace.as_millis());
    Ok(())
}

fn command(input: &[u8]) -> wasmpod::Result<String> {
    let cmd = trim(input);
    let v = match cmd {
        b"inc" => bump(&COUNTER),
        b"state" => COUNTER.with(Cell::get),
        b"starts" => STARTS.with(Cell::get),
        b"ticks" => TICKS.with(Cell::get),
        _ => {
            let shown = &cmd[..cmd.len().min(64)];
            return Err(err!(2, "unknown command: {}", String::from_utf8_lossy(shown)));
        }
    };
    Ok(v.to_string())
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b.iter().position(|c| !c.is_ascii_whitespace()).unwrap_or(b.len());
    let end = b.iter().rposition(|c| !c.is_ascii_whitespace()).map_or(start, |i| i + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmpod::testing;

    fn run(cmd: &str) -> Result<Vec<u8>, i32> {
        testing::output(wasmpod_handle(testing::write_input(cmd.as_bytes())))
    }

    #[test]
    fn commands_and_state() {
        assert_eq!(wasmpod_start(), 0);
        assert_eq!(run("inc"), Ok(b"1".to_vec()));
        assert_eq!(run(" state\n"), Ok(b"1".to_vec()));
        assert_eq!(run("starts"), Ok(b"1".to_vec()));
        assert_eq!(run("nope"), Err(2));
        assert_eq!(testing::take_error().as_deref(), Some("unknown command: nope"));
        assert_eq!(testing::output(wasmpod_snapshot()), Ok(1u64.to_le_bytes().to_vec()));
        assert_eq!(wasmpod_restore(testing::write_input(&7u64.to_le_bytes())), 0);
        assert_eq!(run("state"), Ok(b"7".to_vec()));
        assert_eq!(wasmpod_restore(testing::write_input(b"abc")), 1);
    }

    #[test]
    fn health_from_config() {
        assert_eq!(wasmpod_health(), 0);
        for (v, want) in [("ready", 0), ("notready", 1), ("unhealthy", 2), ("bogus", 2)] {
            testing::set_config("health", Some(v));
            assert_eq!(wasmpod_health(), want);
        }
    }
}
