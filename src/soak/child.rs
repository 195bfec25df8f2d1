//! The daemons under test: starting the real binary as a child, reading its log, killing,
//! reaping and stopping it.

use crate::payment::flow::CRASH_AFTER_JOURNAL_ENV;
use anyhow::{Context, Result};
use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::time::{sleep, Instant};

use super::plan::KillKind;
use super::{Daemon, LogEvent, Soak, TimedKill, TICK};

impl Soak {
    /// Starts kiosk `k`'s next daemon, deciding whether it gets the crash-after-journal hook;
    /// a restart first makes the state fault due, if any.
    pub(super) async fn spawn(&mut self, k: usize, next_cart: usize) -> Result<()> {
        if self.kiosks[k].started {
            if !self.kiosks[k].stopped_cleanly {
                let due = self.state_plan.get(self.kill_restarts).copied().flatten();
                self.kill_restarts += 1;
                self.owed.extend(due);
            }
            self.restarts += 1;
            self.state_fault(k).await?;
        }
        self.kiosks[k].started = true;
        self.kiosks[k].stopped_cleanly = false;
        let carts_left = self.options.payments.saturating_sub(next_cart);
        // A payment appends about five records; the hook's append is drawn from those of the
        // carts one kill's share of the run covers, so hook kills spread over the run instead
        // of bunching right after each restart. Another kiosk's armed hook is a kill already
        // spoken for.
        let share = (carts_left / self.kills_left().max(1)).max(1) as u64;
        let armed = self.hooks_armed();
        let hook = (self.kills_left() > armed && carts_left >= 4 && self.rng.bool())
            .then(|| self.rng.u64(1..=(5 * share).max(12)));
        self.generations += 1;
        let generation = self.generations;
        let name = self.kiosks[k].name;
        let mut command = tokio::process::Command::new(
            std::env::current_exe().context("finding the kioskpay executable")?,
        );
        command
            .arg("run")
            .arg("--config")
            .arg(&self.kiosks[k].config)
            .env(
                "KIOSKPAY_LOG",
                "warn,kioskpay::payment::flow=info,kioskpay::journal=info",
            )
            .env("NO_COLOR", "1")
            .env_remove(CRASH_AFTER_JOURNAL_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            // Its own process group: a Ctrl-C in the terminal interrupts the soak, which then
            // stops the daemon itself, instead of reaching the daemon as a stop nobody asked for.
            .process_group(0);
        if let Some(n) = hook {
            command.env(CRASH_AFTER_JOURNAL_ENV, n.to_string());
        }
        let mut child = command.spawn().context("starting the daemon")?;
        let stdin = child.stdin.take();
        if let Some(stderr) = child.stderr.take() {
            let events = self.events_tx.clone();
            let lines_out = self.log_lines_tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stderr).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let event = if line.contains("cart refused") {
                        Some(LogEvent::Refused)
                    } else if line.contains("recovering an unfinished payment") {
                        Some(LogEvent::Recovering)
                    } else if line.contains("journal replayed") {
                        Some(LogEvent::Ready)
                    } else {
                        None
                    };
                    if let Some(event) = event {
                        let _ = events.send((generation, event));
                    }
                    let _ = lines_out.send(format!("[{name}{generation}] {line}\n"));
                }
            });
        }
        self.kiosks[k].daemon = Some(Daemon {
            kiosk: k,
            generation,
            child,
            stdin,
            hook,
            killed: false,
            ready: false,
        });
        // Plan the next random kill, leaving room for the armed hooks.
        let reserved = self.hooks_armed();
        self.timed_kill = None;
        if self.kills_left() > reserved && carts_left > 0 {
            let gap = (carts_left / (self.kills_left() - reserved)).max(1);
            let cart = (next_cart + self.rng.usize(0..gap * 2)).min(self.options.payments - 1);
            self.timed_kill = Some(TimedKill {
                cart,
                delay: Duration::from_millis(self.rng.u64(0..400)),
                at: None,
            });
        }
        tracing::debug!(generation, kiosk = name, ?hook, timed_kill = ?self.timed_kill, "daemon started");
        Ok(())
    }

    /// Copies the daemon's log lines to `daemon.log` and counts what they announce.
    pub(super) async fn drain_logs(&mut self) -> Vec<(u64, LogEvent)> {
        let mut text = String::new();
        while let Ok(line) = self.log_lines.try_recv() {
            text.push_str(&line);
        }
        if !text.is_empty() {
            let _ = self.log.write_all(text.as_bytes()).await;
        }
        let mut out = Vec::new();
        while let Ok((generation, event)) = self.events.try_recv() {
            match event {
                LogEvent::Recovering => self.recoveries += 1,
                LogEvent::Ready => {
                    for daemon in self.kiosks.iter_mut().filter_map(|k| k.daemon.as_mut()) {
                        if daemon.generation == generation {
                            daemon.ready = true;
                        }
                    }
                }
                LogEvent::Refused => {}
            }
            out.push((generation, event));
        }
        out
    }

    /// Sends `SIGKILL` to kiosk `k`'s daemon and reaps it.
    pub(super) async fn kill(&mut self, k: usize) -> Result<()> {
        if let Some(daemon) = self.kiosks[k].daemon.as_mut() {
            daemon.killed = true;
            daemon.child.start_kill().context("killing the daemon")?;
        }
        self.reap(k, true).await
    }

    /// If kiosk `k`'s daemon has exited (or, with `wait`, once it has), records how and
    /// forgets it.
    pub(super) async fn reap(&mut self, k: usize, wait: bool) -> Result<()> {
        let Some(daemon) = self.kiosks[k].daemon.as_mut() else {
            return Ok(());
        };
        let status = if wait {
            Some(
                daemon
                    .child
                    .wait()
                    .await
                    .context("waiting for the daemon")?,
            )
        } else {
            daemon.child.try_wait().context("checking on the daemon")?
        };
        let Some(status) = status else {
            return Ok(());
        };
        if let Some(daemon) = self.kiosks[k].daemon.take() {
            self.record_exit(&daemon, status);
        }
        Ok(())
    }

    fn record_exit(&mut self, daemon: &Daemon, status: ExitStatus) {
        if daemon.killed {
            self.kills.push(KillKind::Random);
        } else if status.signal() == Some(libc::SIGKILL) && daemon.hook.is_some() {
            self.kills.push(KillKind::Journal);
        } else {
            self.violations.push(format!(
                "daemon run {} of kiosk {} exited by itself ({status}); see daemon.log",
                daemon.generation, self.kiosks[daemon.kiosk].name
            ));
        }
    }

    /// Stops every daemon with `SIGTERM`.
    pub(super) async fn stop_daemon(&mut self) {
        for k in 0..self.kiosks.len() {
            self.stop_kiosk(k).await;
        }
        self.drain_logs().await;
        let _ = self.log.flush().await;
    }

    /// Stops kiosk `k`'s daemon with `SIGTERM` (a clean stop, unlike the kills) and reaps it.
    pub(super) async fn stop_kiosk(&mut self, k: usize) {
        let name = self.kiosks[k].name;
        // A daemon stopped before its SIGTERM handler is installed would die of the signal.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.kiosks[k].daemon.as_ref().is_some_and(|d| !d.ready) && Instant::now() < deadline
        {
            sleep(TICK).await;
            self.drain_logs().await;
        }
        let Some(daemon) = self.kiosks[k].daemon.as_mut() else {
            return;
        };
        if let Some(pid) = daemon.child.id().and_then(|p| i32::try_from(p).ok()) {
            // SAFETY: kill(2) takes no pointers; the pid is our own child, not yet reaped.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let stopped = tokio::time::timeout(Duration::from_secs(15), daemon.child.wait()).await;
        match stopped {
            Ok(Ok(status)) if status.success() => {}
            // Its hook fired while it was being stopped: a kill like any other.
            Ok(Ok(status)) if status.signal() == Some(libc::SIGKILL) && daemon.hook.is_some() => {
                self.kills.push(KillKind::Journal);
            }
            Ok(Ok(status)) => self.violations.push(format!(
                "kiosk {name}'s daemon stopped on SIGTERM with {status}"
            )),
            Ok(Err(e)) => self
                .violations
                .push(format!("cannot wait for kiosk {name}'s daemon: {e}")),
            Err(_) => {
                self.violations.push(format!(
                    "kiosk {name}'s daemon did not stop within 15 s of SIGTERM"
                ));
                let _ = daemon.child.kill().await;
            }
        }
        self.kiosks[k].daemon = None;
        self.kiosks[k].stopped_cleanly = true;
    }
}
