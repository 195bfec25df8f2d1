//! The console's side of the control socket.

use std::io;
use std::path::{Path, PathBuf};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;

use super::protocol::{
    ConfigState, Event, Gpio, Reply, Request, Scan, ServerLine, Status, TerminalReport,
};
use crate::dintero::TerminalOperation;
use crate::refund::journal::Refund;
use crate::refund::PaymentView;

/// Why the daemon could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No daemon answers on the socket.
    #[error("the kioskpay daemon is not running (nothing answers on {}); start it with: systemctl start kioskpay", .path.display())]
    NotRunning {
        /// The socket.
        path: PathBuf,
    },
    /// The socket is there but this user may not use it.
    #[error("may not use the control socket {}: {source}; run the console as root or as a member of the socket's group", .path.display())]
    Denied {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The connection failed mid-way.
    #[error(
        "the connection to the daemon failed: {0}; is it restarting? (systemctl status kioskpay)"
    )]
    Io(#[from] io::Error),
    /// The daemon answered something this console does not understand (another version?).
    #[error("the daemon's answer was not understood: {0}")]
    Protocol(String),
    /// The daemon refused the request.
    #[error("{0}")]
    Refused(String),
}

/// A connection to the daemon.
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    /// Connects to the daemon's socket at `path`.
    pub async fn connect(path: &Path) -> Result<Client, ClientError> {
        let stream = UnixStream::connect(path)
            .await
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                    ClientError::NotRunning {
                        path: path.to_path_buf(),
                    }
                }
                io::ErrorKind::PermissionDenied => ClientError::Denied {
                    path: path.to_path_buf(),
                    source: e,
                },
                _ => ClientError::Io(e),
            })?;
        let (reader, writer) = stream.into_split();
        Ok(Client {
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// Sends `request` and reads its reply (events that arrive first are skipped: use
    /// [`Client::subscribe`] on a connection of its own for those).
    pub async fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let mut line =
            serde_json::to_string(request).map_err(|e| ClientError::Protocol(e.to_string()))?;
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await?;
        loop {
            match self.next_line().await? {
                Some(ServerLine::Reply(reply)) => return Ok(*reply),
                Some(ServerLine::Event(_)) => continue,
                None => {
                    return Err(ClientError::Io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the daemon closed the connection",
                    )))
                }
            }
        }
    }

    /// The kiosk's status.
    pub async fn status(&mut self) -> Result<Status, ClientError> {
        let reply = checked(self.request(&Request::Status {}).await?)?;
        reply
            .status
            .ok_or_else(|| ClientError::Protocol("a status reply without a status".into()))
    }

    /// Asks for maintenance on or off.
    pub async fn maintenance(&mut self, on: bool) -> Result<(), ClientError> {
        checked(self.request(&Request::Maintenance { on }).await?).map(drop)
    }

    /// Asks the daemon to re-read its config file (as SIGHUP does); the config in force after.
    pub async fn reload(&mut self) -> Result<ConfigState, ClientError> {
        config_of(checked(self.request(&Request::Reload {}).await?)?)
    }

    /// Keeps the edit awaiting a confirm; the config in force after.
    pub async fn confirm(&mut self) -> Result<ConfigState, ClientError> {
        config_of(checked(self.request(&Request::Confirm {}).await?)?)
    }

    /// Asks the daemon to request a token with the credentials its config file names now;
    /// what the API said.
    pub async fn check_credentials(&mut self) -> Result<String, ClientError> {
        let reply = checked(self.request(&Request::CheckCredentials {}).await?)?;
        reply
            .credentials
            .ok_or_else(|| ClientError::Protocol("a credentials reply without an answer".into()))
    }

    /// The kiosk's terminal as Dintero sees it now.
    pub async fn terminal(&mut self) -> Result<TerminalReport, ClientError> {
        let reply = checked(self.request(&Request::Terminal {}).await?)?;
        reply
            .terminal
            .map(|t| *t)
            .ok_or_else(|| ClientError::Protocol("a terminal reply without a terminal".into()))
    }

    /// Asks Dintero to retry the terminal's set-up; the terminal as it is afterwards.
    pub async fn terminal_sync(&mut self) -> Result<TerminalReport, ClientError> {
        let reply = checked(self.request(&Request::TerminalSync {}).await?)?;
        reply
            .terminal
            .map(|t| *t)
            .ok_or_else(|| ClientError::Protocol("a sync reply without a terminal".into()))
    }

    /// Starts `operation` on the terminal; `key` makes a repeated request the same operation.
    pub async fn terminal_operation(
        &mut self,
        operation: &str,
        key: &str,
    ) -> Result<TerminalOperation, ClientError> {
        let request = Request::TerminalOperation {
            operation: operation.into(),
            key: key.into(),
        };
        let reply = checked(self.request(&request).await?)?;
        reply
            .operation
            .map(|o| *o)
            .ok_or_else(|| ClientError::Protocol("an operation reply without the operation".into()))
    }

    /// The terminal's operations, newest first.
    pub async fn terminal_operations(&mut self) -> Result<Vec<TerminalOperation>, ClientError> {
        let reply = checked(self.request(&Request::TerminalOperations {}).await?)?;
        reply
            .operations
            .ok_or_else(|| ClientError::Protocol("an operations reply without operations".into()))
    }

    /// Asks for a technician's test payment of `amount` minor units (follow it with events).
    pub async fn test_payment(&mut self, amount: u64, technician: &str) -> Result<(), ClientError> {
        let request = Request::TestPayment {
            amount,
            technician: technician.into(),
        };
        checked(self.request(&request).await?).map(drop)
    }

    /// Waits for the next scan, which the daemon decodes and does not pay (needs maintenance).
    pub async fn scan_test(&mut self) -> Result<Scan, ClientError> {
        let reply = checked(self.request(&Request::ScanTest {}).await?)?;
        reply
            .scan
            .map(|scan| *scan)
            .ok_or_else(|| ClientError::Protocol("a scan_test reply without a scan".into()))
    }

    /// Shows the test pattern or a customer screen (by its `kioskpay render` name) on the panel,
    /// or with `None` gives the panel back to the kiosk.
    pub async fn display_test(&mut self, screen: Option<&str>) -> Result<(), ClientError> {
        let screen = screen.map(str::to_string);
        checked(self.request(&Request::DisplayTest { screen }).await?).map(drop)
    }

    /// The GPIO lines: at once with `None`, else after the next edge past `seen` (or the
    /// daemon's wait).
    pub async fn gpio_test(&mut self, seen: Option<u64>) -> Result<Gpio, ClientError> {
        let reply = checked(self.request(&Request::GpioTest { seen }).await?)?;
        reply
            .gpio
            .map(|gpio| *gpio)
            .ok_or_else(|| ClientError::Protocol("a gpio_test reply without the lines".into()))
    }

    /// Flips the GPIO output on `line` for a second; whether it was asserted meanwhile.
    pub async fn gpio_toggle(&mut self, line: u32) -> Result<bool, ClientError> {
        let reply = checked(self.request(&Request::GpioToggle { line }).await?)?;
        reply
            .toggled
            .ok_or_else(|| ClientError::Protocol("a gpio_toggle reply without the level".into()))
    }

    /// The payment behind `transaction_id` as Dintero shows it now.
    pub async fn payment(&mut self, transaction_id: &str) -> Result<PaymentView, ClientError> {
        let request = Request::Payment {
            transaction_id: transaction_id.to_string(),
        };
        checked(self.request(&request).await?)?
            .payment
            .map(|p| *p)
            .ok_or_else(|| ClientError::Protocol("a payment reply without a payment".into()))
    }

    /// Refunds `amount` minor units of `transaction_id` (everything refundable when `None`);
    /// answers once the refund has its result.
    pub async fn refund(
        &mut self,
        transaction_id: &str,
        amount: Option<u64>,
        technician: &str,
    ) -> Result<Refund, ClientError> {
        let request = Request::Refund {
            transaction_id: transaction_id.to_string(),
            amount,
            technician: technician.to_string(),
        };
        checked(self.request(&request).await?)?
            .refund
            .map(|r| *r)
            .ok_or_else(|| ClientError::Protocol("a refund reply without a refund".into()))
    }

    /// Voids the authorized payment of `session_id`; answers the payment as it is after.
    pub async fn void(
        &mut self,
        session_id: &str,
        technician: &str,
    ) -> Result<PaymentView, ClientError> {
        let request = Request::Void {
            session_id: session_id.to_string(),
            technician: technician.to_string(),
        };
        checked(self.request(&request).await?)?
            .payment
            .map(|p| *p)
            .ok_or_else(|| ClientError::Protocol("a void reply without a payment".into()))
    }

    /// Asks the daemon to settle what is open for the payment `merchant_reference`.
    pub async fn resolve(
        &mut self,
        merchant_reference: &str,
        technician: &str,
    ) -> Result<(), ClientError> {
        let request = Request::Resolve {
            merchant_reference: merchant_reference.to_string(),
            technician: technician.to_string(),
        };
        checked(self.request(&request).await?).map(drop)
    }

    /// The transactions on the kiosk's terminal since `since` (RFC 3339), newest first, and
    /// whether the oldest are missing (the daemon's page limit).
    pub async fn transactions(
        &mut self,
        since: Option<&str>,
    ) -> Result<(Vec<PaymentView>, bool), ClientError> {
        let request = Request::Transactions {
            since: since.map(str::to_string),
        };
        let reply = checked(self.request(&request).await?)?;
        let transactions = reply.transactions.ok_or_else(|| {
            ClientError::Protocol("a transactions reply without transactions".into())
        })?;
        Ok((transactions, reply.truncated.unwrap_or(false)))
    }

    /// Turns this connection into a stream of events.
    pub async fn subscribe(mut self) -> Result<Events, ClientError> {
        checked(self.request(&Request::Events {}).await?)?;
        Ok(Events { client: self })
    }

    async fn next_line(&mut self) -> Result<Option<ServerLine>, ClientError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        serde_json::from_str(&line)
            .map(Some)
            .map_err(|e| ClientError::Protocol(e.to_string()))
    }
}

/// Waits until a daemon answers `status` on `path` (after a restart), for at most `limit`;
/// its status, or `None` when none answered in time.
pub async fn wait_until_answering(path: &Path, limit: std::time::Duration) -> Option<Status> {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Ok(mut client) = Client::connect(path).await {
            if let Ok(status) = client.status().await {
                return Some(status);
            }
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn checked(reply: Reply) -> Result<Reply, ClientError> {
    if reply.ok {
        Ok(reply)
    } else {
        Err(ClientError::Refused(
            reply.error.unwrap_or_else(|| "refused".into()),
        ))
    }
}

fn config_of(reply: Reply) -> Result<ConfigState, ClientError> {
    reply
        .config
        .ok_or_else(|| ClientError::Protocol("a config reply without the config".into()))
}

/// Events from the daemon.
pub struct Events {
    client: Client,
}

impl Events {
    /// The next event; `None` when the daemon is gone.
    pub async fn next(&mut self) -> Option<Event> {
        loop {
            match self.client.next_line().await {
                Ok(Some(ServerLine::Event(event))) => return Some(event),
                Ok(Some(ServerLine::Reply(_))) | Err(ClientError::Protocol(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }
}
