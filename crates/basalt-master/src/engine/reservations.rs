//! The engine's part of reservations: a reservation is a job whose Start carries a lease (to
//! a worker with the `reservations` capability only), whose worker reports `hold_state`
//! (mapped to the reservation's state) and answers `hold` requests with `hold_reply`
//! (completing the REST call that asked, by request id; a call pending when its worker's link
//! drops is answered 503). Leases expire on a tokio timer set at the earliest expiry: the
//! master then cancels the job, as it does on release; the job's end gives the final state,
//! frees the device as any job's, and queues a health check when something was booted.

use super::{now_ms, Engine, EngineError, Handle, Request};
use crate::model::{DeviceHealth, JobHealth, JobState, Priority};
use crate::reservation::boot::{self, BootRequest, BootTarget};
use crate::reservation::requirements::normalise_arch;
use crate::reservation::{Ending, ReservationState};
use crate::scheduler::{QueuedJob, Snapshot, Target};
use crate::store::{NewJob, NewReservation, Reservation, ReservationUpdate, Store};
use basalt_proto::{
    Capability, Hold, HoldAction, HoldPhase, HoldReply, HoldResult, HoldState, JobId, Lease,
    MasterMsg, Start,
};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// How long a boot or power-off waits for the worker to take it.
const ACCEPT_TIMEOUT: Duration = Duration::from_secs(30);

/// What an exec waits beyond its command's own timeout for the worker's answer.
pub const EXEC_MARGIN: Duration = Duration::from_secs(15);

/// Why a reservation call failed; each is one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ReservationError {
    /// 400: the request is wrong (a boot the device cannot run, a lease too long).
    #[error("{0}")]
    Invalid(String),
    /// 404.
    #[error("no reservation {0}")]
    NotFound(u64),
    /// 409: not in a state that allows it, or the board refused.
    #[error("{0}")]
    Conflict(String),
    /// 503: the worker is not connected (or its link dropped); retry.
    #[error("{0}")]
    Unavailable(String),
    /// 504: the worker did not answer in time.
    #[error("the worker did not answer within {0:?}")]
    Timeout(Duration),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl From<crate::store::StoreError> for ReservationError {
    fn from(e: crate::store::StoreError) -> ReservationError {
        ReservationError::Engine(EngineError::Store(e))
    }
}

/// A new reservation, checked by the API: what its job asks for and its lease.
pub struct NewLease {
    pub target: Target,
    pub tags: Vec<String>,
    pub priority: Priority,
    pub description: String,
    pub lease: NewReservation,
}

/// An exec's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecOutput {
    pub output: String,
    pub exit_status: i32,
    pub truncated: bool,
}

type Reply<T> = oneshot::Sender<Result<T, ReservationError>>;

/// A reservation call on the engine.
pub(super) enum Call {
    Create(Box<NewLease>, Reply<u64>),
    Renew(u64, Option<u64>, Reply<()>),
    Boot(u64, Box<BootRequest>, Reply<()>),
    Exec(u64, String, u64, Reply<ExecOutput>),
    PowerOff(u64, Reply<()>),
    Release(u64, Reply<()>),
}

/// A `hold` sent and not answered yet.
pub(super) struct PendingHold {
    job_id: u64,
    worker: String,
    /// Who waits for the answer (none: a boot the master sent on its own).
    waiter: Option<Reply<HoldResult>>,
    /// Given up after this (the waiter has timed out by then).
    deadline: Instant,
}

/// The reservations' state in the engine.
#[derive(Default)]
pub(super) struct Leases {
    pending: BTreeMap<u64, PendingHold>,
    next_request: u64,
    /// When the earliest lease runs out.
    pub(super) wake: Option<tokio::time::Instant>,
    /// Why each queued reservation waits, as last stored.
    reasons: BTreeMap<u64, String>,
}

/// What the engine makes of an `artifact:NAME` left in a boot request: none is left, the API
/// resolved them at the edge ([`BootRequest::resolve_artifacts`]), so `None`.
pub fn artifact_url(_name: &str) -> Option<String> {
    None
}

/// The boot job of `req` for reservation `id` on device `hostname` (its dictionary rendered
/// with the master's templates), checked.
pub fn boot_job(
    store: &Store,
    device_types: &[PathBuf],
    id: u64,
    hostname: &str,
    req: &BootRequest,
) -> Result<String, ReservationError> {
    let device = store
        .device(hostname)?
        .ok_or_else(|| ReservationError::Invalid(format!("no device {hostname:?}")))?;
    let dictionary = device
        .dictionary
        .ok_or_else(|| ReservationError::Invalid(format!("device {hostname} has no dictionary")))?;
    let rendered = basalt_model::device::render::render_str(
        hostname,
        &dictionary,
        device_types,
        &Default::default(),
    )
    .map_err(|e| ReservationError::Invalid(format!("device {hostname}: {e}")))?;
    let parsed = basalt_model::device::Device::from_yaml(hostname, &rendered, hostname)
        .map_err(|e| ReservationError::Invalid(format!("device {hostname}: {e}")))?;
    let arch = basalt_model::device::render::dictionary_variables(hostname, &dictionary)
        .ok()
        .and_then(|v| v.get("arch").and_then(|a| a.scalar_text()))
        .map(|a| normalise_arch(&a));
    boot::definition(
        req,
        &BootTarget {
            reservation_id: id,
            device_type: &device.device_type,
            arch: arch.as_deref(),
            device: &parsed,
        },
        &artifact_url,
    )
    .map_err(|e| ReservationError::Invalid(e.to_string()))
}

impl Reservation {
    /// Whether it is over: released, expired, or failed for good (its hold ended).
    pub fn is_over(&self) -> bool {
        self.state.is_final() || self.ending == Some(Ending::Lost)
    }
}

impl Handle {
    async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Call) -> Result<T, ReservationError> {
        let (tx, rx) = oneshot::channel();
        self.requests
            .send(Request::Reservation(make(tx)))
            .map_err(|_| EngineError::Stopped)?;
        rx.await.map_err(|_| EngineError::Stopped)?
    }

    /// Stores a reservation and queues its job; returns its id.
    pub async fn reserve(&self, lease: NewLease) -> Result<u64, ReservationError> {
        self.call(|tx| Call::Create(Box::new(lease), tx)).await
    }

    /// Moves a lease's expiry to now + `lease_secs` (default: its length).
    pub async fn renew(&self, id: u64, lease_secs: Option<u64>) -> Result<(), ReservationError> {
        self.call(|tx| Call::Renew(id, lease_secs, tx)).await
    }

    /// Boots the held board (or keeps the boot for when it is held).
    pub async fn boot(&self, id: u64, req: BootRequest) -> Result<(), ReservationError> {
        self.call(|tx| Call::Boot(id, Box::new(req), tx)).await
    }

    /// Runs `command` on the held board's shell; waits up to `timeout_secs` + a margin.
    pub async fn exec(
        &self,
        id: u64,
        command: String,
        timeout_secs: u64,
    ) -> Result<ExecOutput, ReservationError> {
        let wait = Duration::from_secs(timeout_secs) + EXEC_MARGIN;
        match tokio::time::timeout(
            wait,
            self.call(|tx| Call::Exec(id, command, timeout_secs, tx)),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(ReservationError::Timeout(wait)),
        }
    }

    /// Powers the held board off.
    pub async fn power_off(&self, id: u64) -> Result<(), ReservationError> {
        self.call(|tx| Call::PowerOff(id, tx)).await
    }

    /// Releases a reservation (idempotent): its job is canceled, the final state follows the
    /// job's end.
    pub async fn release(&self, id: u64) -> Result<(), ReservationError> {
        self.call(|tx| Call::Release(id, tx)).await
    }
}

/// Waits for a worker's answer to a hold, at most `within`.
async fn answer(
    rx: oneshot::Receiver<Result<HoldResult, ReservationError>>,
    within: Duration,
) -> Result<HoldResult, ReservationError> {
    match tokio::time::timeout(within, rx).await {
        Ok(Ok(r)) => r,
        Ok(Err(_)) => Err(ReservationError::Unavailable(
            "the worker's link dropped: retry".into(),
        )),
        Err(_) => Err(ReservationError::Timeout(within)),
    }
}

impl Engine {
    pub(super) fn on_reservation_call(&mut self, call: Call) {
        match call {
            Call::Create(lease, reply) => {
                let r = self.create_reservation(*lease);
                let ok = r.is_ok();
                let _ = reply.send(r);
                if ok {
                    self.schedule();
                    self.arm_leases();
                }
            }
            Call::Renew(id, secs, reply) => {
                let _ = reply.send(self.renew(id, secs));
                self.arm_leases();
            }
            Call::Boot(id, req, reply) => match self.boot_held(id, *req, false) {
                Ok(Some(rx)) => {
                    tokio::spawn(async move {
                        let r = match answer(rx, ACCEPT_TIMEOUT).await {
                            Ok(HoldResult::Accepted) => Ok(()),
                            Ok(HoldResult::Error { error }) => {
                                Err(ReservationError::Conflict(error))
                            }
                            Ok(other) => Err(ReservationError::Conflict(format!(
                                "the worker answered a boot with {other:?}"
                            ))),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    });
                }
                Ok(None) => {
                    let _ = reply.send(Ok(()));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Call::Exec(id, command, timeout_secs, reply) => {
                match self.exec(id, command, timeout_secs) {
                    Ok(rx) => {
                        let within = Duration::from_secs(timeout_secs) + EXEC_MARGIN;
                        tokio::spawn(async move {
                            let r = match answer(rx, within).await {
                                Ok(HoldResult::Exec {
                                    output,
                                    exit_status,
                                    truncated,
                                }) => Ok(ExecOutput {
                                    output,
                                    exit_status,
                                    truncated,
                                }),
                                Ok(HoldResult::Error { error }) => {
                                    Err(ReservationError::Conflict(error))
                                }
                                Ok(HoldResult::Accepted) => Err(ReservationError::Conflict(
                                    "the worker took the command but sent no output".into(),
                                )),
                                Err(e) => Err(e),
                            };
                            let _ = reply.send(r);
                        });
                    }
                    Err(e) => {
                        let _ = reply.send(Err(e));
                    }
                }
            }
            Call::PowerOff(id, reply) => match self.power_off(id) {
                Ok(rx) => {
                    let store = self.store.clone();
                    tokio::spawn(async move {
                        let r = match answer(rx, ACCEPT_TIMEOUT).await {
                            Ok(HoldResult::Accepted) => store
                                .update_reservation(
                                    id,
                                    &ReservationUpdate {
                                        state: Some(ReservationState::Ready),
                                        shell: Some(false),
                                        ..ReservationUpdate::default()
                                    },
                                )
                                .map_err(ReservationError::from),
                            Ok(HoldResult::Error { error }) => {
                                Err(ReservationError::Conflict(error))
                            }
                            Ok(other) => Err(ReservationError::Conflict(format!(
                                "the worker answered a power-off with {other:?}"
                            ))),
                            Err(e) => Err(e),
                        };
                        let _ = reply.send(r);
                    });
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            },
            Call::Release(id, reply) => {
                let r = self.end_lease(id, Ending::Release);
                let _ = reply.send(r);
            }
        }
    }

    fn create_reservation(&mut self, lease: NewLease) -> Result<u64, ReservationError> {
        let max = self.config.max_lease.as_secs();
        if lease.lease.lease_secs == 0 || lease.lease.lease_secs > max {
            return Err(ReservationError::Invalid(format!(
                "'lease_secs' must be from 1 to {max} (the master's --max-lease)"
            )));
        }
        let definition = format!(
            "# basalt reservation for {}: a job that waits for its holder; the board is held,\n\
             # not run (see /api/v0.2/reservations/)\njob_name: {}\n",
            lease.lease.holder,
            basalt_model::yaml::quote_str(&lease.description)
        );
        let id = self.store.reserve(
            &NewJob {
                submitter: lease.lease.holder.clone(),
                description: lease.description,
                definition,
                target: lease.target,
                tags: lease.tags,
                priority: lease.priority,
                health_check: false,
            },
            &lease.lease,
            now_ms(),
        )?;
        tracing::info!(
            job_id = id,
            "reservation {id} queued for {}",
            lease.lease.holder
        );
        Ok(id)
    }

    /// The reservation `id`, or 404; 409 when it is over.
    fn live_reservation(&self, id: u64) -> Result<Reservation, ReservationError> {
        let r = self
            .store
            .reservation(id)?
            .ok_or(ReservationError::NotFound(id))?;
        if r.is_over() {
            return Err(ReservationError::Conflict(format!(
                "reservation {id} is {}",
                r.state
            )));
        }
        Ok(r)
    }

    fn renew(&mut self, id: u64, secs: Option<u64>) -> Result<(), ReservationError> {
        let r = self.live_reservation(id)?;
        if r.ending.is_some() {
            return Err(ReservationError::Conflict(format!(
                "reservation {id} is ending"
            )));
        }
        let secs = secs.unwrap_or(r.lease_secs);
        let max = self.config.max_lease.as_secs();
        if secs == 0 || secs > max {
            return Err(ReservationError::Invalid(format!(
                "'lease_secs' must be from 1 to {max} (the master's --max-lease)"
            )));
        }
        self.store.update_reservation(
            id,
            &ReservationUpdate {
                expires: Some(now_ms().saturating_add(secs.saturating_mul(1000))),
                lease_secs: Some(secs),
                ..ReservationUpdate::default()
            },
        )?;
        Ok(())
    }

    /// Sends `action` to the worker holding reservation `r`; returns the request's id.
    fn send_hold(
        &mut self,
        r: &Reservation,
        action: HoldAction,
        waiter: Option<Reply<HoldResult>>,
        within: Duration,
    ) -> Result<u64, ReservationError> {
        let worker = r.worker.clone().ok_or_else(|| {
            ReservationError::Conflict(format!("reservation {} has no device yet", r.id))
        })?;
        let session = self.sessions.get(&worker).ok_or_else(|| {
            ReservationError::Unavailable(format!("worker {worker} is not connected: retry"))
        })?;
        self.leases.next_request += 1;
        let request_id = self.leases.next_request;
        self.link.send(
            &session.conn,
            MasterMsg::Hold(Hold {
                job_id: JobId(r.id),
                request_id,
                action,
            }),
        );
        self.leases.pending.insert(
            request_id,
            PendingHold {
                job_id: r.id,
                worker,
                waiter,
                deadline: Instant::now() + within + EXEC_MARGIN,
            },
        );
        Ok(request_id)
    }

    /// Boots reservation `id`'s board: kept for later when it is not held yet, else sent;
    /// the receiver gets the worker's answer (`None`: nothing to wait for). `auto`: the boot
    /// of the create request, sent once the board is held.
    fn boot_held(
        &mut self,
        id: u64,
        req: BootRequest,
        auto: bool,
    ) -> Result<Option<oneshot::Receiver<Result<HoldResult, ReservationError>>>, ReservationError>
    {
        let r = self.live_reservation(id)?;
        if r.ending.is_some() {
            return Err(ReservationError::Conflict(format!(
                "reservation {id} is ending"
            )));
        }
        match r.state {
            ReservationState::Queued | ReservationState::Allocated if !auto => {
                // checked against the device once it has one
                self.store.update_reservation(
                    id,
                    &ReservationUpdate {
                        boot: Some(Some(req)),
                        ..ReservationUpdate::default()
                    },
                )?;
                return Ok(None);
            }
            ReservationState::Booting if !auto => {
                return Err(ReservationError::Conflict(format!(
                    "reservation {id} is booting already"
                )))
            }
            _ => {}
        }
        let hostname = r.device.clone().ok_or_else(|| {
            ReservationError::Conflict(format!("reservation {id} has no device yet"))
        })?;
        let definition = boot_job(&self.store, &self.config.device_types, id, &hostname, &req)?;
        let (tx, rx) = oneshot::channel();
        self.send_hold(
            &r,
            HoldAction::Boot {
                definition,
                timeout_secs: req.timeout_secs(),
            },
            Some(tx),
            ACCEPT_TIMEOUT,
        )?;
        self.store.update_reservation(
            id,
            &ReservationUpdate {
                state: Some(ReservationState::Booting),
                booted: Some(true),
                shell: Some(false),
                reason: Some(None),
                boot: Some(None),
                ..ReservationUpdate::default()
            },
        )?;
        Ok(Some(rx))
    }

    fn exec(
        &mut self,
        id: u64,
        command: String,
        timeout_secs: u64,
    ) -> Result<oneshot::Receiver<Result<HoldResult, ReservationError>>, ReservationError> {
        let r = self.live_reservation(id)?;
        if r.state != ReservationState::Ready || !r.shell || r.ending.is_some() {
            return Err(ReservationError::Conflict(format!(
                "reservation {id} is {}{}: exec needs a board booted to its shell (ready after a boot)",
                r.state,
                if r.state == ReservationState::Ready { ", nothing booted" } else { "" }
            )));
        }
        let (tx, rx) = oneshot::channel();
        let within = Duration::from_secs(timeout_secs);
        self.send_hold(
            &r,
            HoldAction::Exec {
                command,
                timeout_secs,
            },
            Some(tx),
            within,
        )?;
        Ok(rx)
    }

    fn power_off(
        &mut self,
        id: u64,
    ) -> Result<oneshot::Receiver<Result<HoldResult, ReservationError>>, ReservationError> {
        let r = self.live_reservation(id)?;
        if !matches!(r.state, ReservationState::Ready | ReservationState::Failed)
            || r.ending.is_some()
        {
            return Err(ReservationError::Conflict(format!(
                "reservation {id} is {}: power-off needs a held board (ready or failed)",
                r.state
            )));
        }
        let (tx, rx) = oneshot::channel();
        self.send_hold(&r, HoldAction::PowerOff, Some(tx), ACCEPT_TIMEOUT)?;
        Ok(rx)
    }

    /// Ends reservation `id` for `why`: its job is canceled (a queued one at once). Idempotent.
    pub(super) fn end_lease(&mut self, id: u64, why: Ending) -> Result<(), ReservationError> {
        let r = self
            .store
            .reservation(id)?
            .ok_or(ReservationError::NotFound(id))?;
        if r.is_over() || r.ending.is_some() {
            return Ok(());
        }
        self.store.update_reservation(
            id,
            &ReservationUpdate {
                ending: Some(why),
                ..ReservationUpdate::default()
            },
        )?;
        tracing::info!(
            job_id = id,
            "reservation {id}: {}",
            match why {
                Ending::Expiry => "the lease ran out",
                _ => "released",
            }
        );
        let job = self.store.job(id)?.ok_or(ReservationError::NotFound(id))?;
        self.cancel_one(job)?;
        // a queued one ended at once
        if self
            .store
            .job(id)?
            .is_some_and(|j| j.state == JobState::Finished)
        {
            self.reservation_ended(id, None);
        }
        Ok(())
    }

    /// After the job of reservation `id` finished (`error`: why it failed, when it did): its
    /// final state, its pending calls answered.
    pub(super) fn reservation_ended(&mut self, id: u64, error: Option<String>) {
        let Ok(Some(r)) = self.store.reservation(id) else {
            return;
        };
        if r.is_over() {
            return;
        }
        let (state, ending, reason) = match r.ending {
            Some(Ending::Release) => (ReservationState::Released, Ending::Release, r.reason),
            Some(Ending::Expiry) => (
                ReservationState::Expired,
                Ending::Expiry,
                Some("the lease ran out".to_string()),
            ),
            Some(Ending::Lost) | None => (
                ReservationState::Failed,
                Ending::Lost,
                Some(error.unwrap_or_else(|| "the hold ended".into())),
            ),
        };
        let _ = self.store.update_reservation(
            id,
            &ReservationUpdate {
                state: Some(state),
                ending: Some(ending),
                shell: Some(false),
                reason: Some(reason),
                ..ReservationUpdate::default()
            },
        );
        tracing::info!(job_id = id, "reservation {id} {state}");
        let ids: Vec<u64> = self
            .leases
            .pending
            .iter()
            .filter(|(_, p)| p.job_id == id)
            .map(|(k, _)| *k)
            .collect();
        for k in ids {
            if let Some(p) = self.leases.pending.remove(&k) {
                if let Some(w) = p.waiter {
                    let _ = w.send(Err(ReservationError::Conflict(format!(
                        "reservation {id} ended ({state})"
                    ))));
                }
            }
        }
        self.leases.reasons.remove(&id);
        self.arm_leases();
    }

    /// What the end of job `id` asks of its device's health when it is a reservation that
    /// booted something: Unknown (a health check follows) when its type has one.
    pub(super) fn reservation_device_health(&self, id: u64) -> Option<DeviceHealth> {
        let r = self.store.reservation(id).ok().flatten()?;
        if !r.booted {
            return None;
        }
        let t = self
            .store
            .device_type(r.device_type.as_deref()?)
            .ok()
            .flatten()?;
        (t.health_check.is_some() && !t.rule.disabled).then_some(DeviceHealth::Unknown)
    }

    /// The Start of reservation `r` on `hostname`, rendered `device_config`.
    pub(super) fn lease_start(
        &self,
        r: &Reservation,
        hostname: &str,
        device_config: String,
    ) -> Start {
        // an emulated board gets its SSH forwarded by the worker (docs/reservations.md, SSH)
        let forward_ssh =
            basalt_model::device::Device::from_yaml(hostname, &device_config, hostname)
                .is_ok_and(|d| d.has_boot_method("qemu"));
        Start {
            job_id: JobId(r.id),
            device: hostname.into(),
            definition: String::new(),
            device_config,
            // the master ends a hold (Cancel at expiry or release); the worker need not time it
            job_timeout_secs: self.config.max_lease.as_secs(),
            health_check: false,
            coordinator: None,
            coordinator_token: None,
            lease: Some(Lease {
                reservation_id: r.id,
                console_token: r.console_token.clone(),
                watch_token: r.watch_token.clone(),
                ssh_public_key: Some(r.ssh_public_key.clone()),
                ssh_user: Some(r.ssh_user.clone()),
                forward_ssh,
            }),
        }
    }

    /// Whether worker `worker`'s connection holds boards.
    pub(super) fn holds_boards(&self, worker: &str) -> bool {
        self.sessions
            .get(worker)
            .is_some_and(|s| s.capabilities.contains(&Capability::RESERVATIONS))
    }

    /// A reservation's Start went out: allocated, its lease counted from now (a reservation
    /// that waited in the queue gets its whole lease).
    pub(super) fn reservation_allocated(&mut self, id: u64) {
        let Ok(Some(r)) = self.store.reservation(id) else {
            return;
        };
        let now = now_ms();
        let _ = self.store.update_reservation(
            id,
            &ReservationUpdate {
                state: Some(ReservationState::Allocated),
                reason: Some(None),
                expires: Some(
                    r.expires
                        .max(now.saturating_add(r.lease_secs.saturating_mul(1000))),
                ),
                ..ReservationUpdate::default()
            },
        );
        self.leases.reasons.remove(&id);
        self.arm_leases();
    }

    /// A worker's `hold_state`: the reservation's state, connection and reason; a held board
    /// with a boot pending gets it.
    pub(super) fn on_hold_state(&mut self, worker: &str, s: HoldState) {
        let id = s.job_id.0;
        if !self.owns(worker, id) {
            return;
        }
        let _ = self.store.job_running(id, now_ms());
        let Ok(Some(r)) = self.store.reservation(id) else {
            return;
        };
        if r.is_over() {
            return;
        }
        let mut u = ReservationUpdate {
            connection: Some(s.connection),
            ..ReservationUpdate::default()
        };
        let mut pending_boot = None;
        match s.state {
            HoldPhase::Held => match r.boot.clone() {
                Some(b) if r.ending.is_none() => pending_boot = Some(b),
                _ => {
                    u.state = Some(ReservationState::Ready);
                    u.shell = Some(false);
                    u.reason = Some(None);
                }
            },
            HoldPhase::Booting => {
                u.state = Some(ReservationState::Booting);
                u.shell = Some(false);
            }
            HoldPhase::Ready => {
                u.state = Some(ReservationState::Ready);
                u.shell = Some(true);
                u.reason = Some(None);
            }
            HoldPhase::Failed => {
                u.state = Some(ReservationState::Failed);
                u.shell = Some(false);
                u.reason = Some(Some(s.reason.unwrap_or_else(|| "the boot failed".into())));
            }
            HoldPhase::Unknown => {}
        }
        if let Err(e) = self.store.update_reservation(id, &u) {
            tracing::error!(job_id = id, "reservation {id}: storing its state: {e}");
            return;
        }
        if let Some(b) = pending_boot {
            if let Err(e) = self.boot_held(id, b, true) {
                let _ = self.store.update_reservation(
                    id,
                    &ReservationUpdate {
                        state: Some(ReservationState::Failed),
                        reason: Some(Some(e.to_string())),
                        boot: Some(None),
                        ..ReservationUpdate::default()
                    },
                );
            }
        }
    }

    /// A worker's `hold_reply`: completes the call that asked.
    pub(super) fn on_hold_reply(&mut self, worker: &str, reply: HoldReply) {
        let Some(p) = self.leases.pending.remove(&reply.request_id) else {
            tracing::warn!(worker = %worker, "worker {worker}: hold_reply {} answers no request", reply.request_id);
            return;
        };
        if p.worker != worker || p.job_id != reply.job_id.0 {
            tracing::warn!(worker = %worker, "worker {worker}: hold_reply {} is not its to answer", reply.request_id);
            self.leases.pending.insert(reply.request_id, p);
            return;
        }
        if let HoldResult::Error { error } = &reply.result {
            // a boot the worker refused: the board is still held, the boot failed
            let r = self.store.reservation(p.job_id).ok().flatten();
            if r.is_some_and(|r| r.state == ReservationState::Booting) {
                let _ = self.store.update_reservation(
                    p.job_id,
                    &ReservationUpdate {
                        state: Some(ReservationState::Failed),
                        reason: Some(Some(error.clone())),
                        ..ReservationUpdate::default()
                    },
                );
            }
        }
        if let Some(w) = p.waiter {
            let _ = w.send(Ok(reply.result));
        }
    }

    /// The calls pending on `worker`, answered 503 (its link dropped).
    pub(super) fn worker_gone(&mut self, worker: &str) {
        let ids: Vec<u64> = self
            .leases
            .pending
            .iter()
            .filter(|(_, p)| p.worker == worker)
            .map(|(k, _)| *k)
            .collect();
        for k in ids {
            if let Some(p) = self.leases.pending.remove(&k) {
                if let Some(w) = p.waiter {
                    let _ = w.send(Err(ReservationError::Unavailable(format!(
                        "worker {worker}'s link dropped: retry"
                    ))));
                }
            }
        }
    }

    /// Forgets requests whose waiters gave up.
    pub(super) fn purge_holds(&mut self) {
        let now = Instant::now();
        self.leases.pending.retain(|_, p| p.deadline > now);
    }

    /// Sets the lease timer at the earliest expiry.
    pub(super) fn arm_leases(&mut self) {
        let next = match self.store.next_expiry() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("reservations: cannot read their expiries: {e}");
                None
            }
        };
        let now = now_ms();
        self.leases.wake = next
            .map(|t| tokio::time::Instant::now() + Duration::from_millis(t.saturating_sub(now)));
    }

    /// The lease timer fired: every lease that ran out is ended.
    pub(super) fn expire_leases(&mut self) {
        self.leases.wake = None;
        match self.store.expired_reservations(now_ms()) {
            Ok(ids) => {
                for id in ids {
                    if let Err(e) = self.end_lease(id, Ending::Expiry) {
                        tracing::error!(job_id = id, "reservation {id}: cannot end it: {e}");
                    }
                }
            }
            Err(e) => tracing::error!("reservations: cannot read the expired: {e}"),
        }
        self.arm_leases();
        self.schedule();
    }

    /// Fills each device's `holds` from its worker's connection.
    pub(super) fn mark_holding_workers(&self, snapshot: &mut Snapshot) {
        for d in &mut snapshot.devices {
            d.holds = self.holds_boards(&d.worker);
        }
    }

    /// After a pass: why each queued reservation that got no device waits, when it is for a
    /// worker that holds boards.
    pub(super) fn explain_waiting(&mut self, snapshot: &Snapshot, assigned: &[u64]) {
        for j in snapshot.jobs.iter().filter(|j| j.reservation) {
            if assigned.contains(&j.id) {
                continue;
            }
            let reason = waiting_reason(j, snapshot);
            if self.leases.reasons.get(&j.id) == reason.as_ref() {
                continue;
            }
            let _ = self.store.update_reservation(
                j.id,
                &ReservationUpdate {
                    reason: Some(reason.clone()),
                    ..ReservationUpdate::default()
                },
            );
            match reason {
                Some(r) => {
                    self.leases.reasons.insert(j.id, r);
                }
                None => {
                    self.leases.reasons.remove(&j.id);
                }
            }
        }
    }

    /// Whether job `id` is a reservation whose job just ended with `health` (for the end
    /// paths of the engine).
    pub(super) fn after_job_end(&mut self, id: u64, health: JobHealth, error: Option<String>) {
        if self.store.is_reservation(id).unwrap_or(false) {
            let error = (health != JobHealth::Complete)
                .then(|| error.unwrap_or_else(|| format!("the hold ended {health}")));
            self.reservation_ended(id, error);
        }
    }
}

/// Why queued reservation `j` waits, when its devices are free but on workers that do not
/// hold boards.
fn waiting_reason(j: &QueuedJob, s: &Snapshot) -> Option<String> {
    let fits = |d: &&crate::scheduler::DeviceInfo| match &j.target {
        Target::DeviceType(t) => d.device_type == *t,
        Target::Device(h) => d.hostname == *h,
        Target::AnyOf(list) => list.contains(&d.hostname),
    } && j.tags.iter().all(|t| d.tags.contains(t));
    let candidates: Vec<&crate::scheduler::DeviceInfo> = s.devices.iter().filter(fits).collect();
    if candidates.is_empty() || candidates.iter().any(|d| d.holds) {
        return None;
    }
    let mut workers: Vec<&str> = candidates.iter().map(|d| d.worker.as_str()).collect();
    workers.sort_unstable();
    workers.dedup();
    Some(format!(
        "waiting for a worker with the `reservations` capability: its devices are on {} (without it, or not connected)",
        workers.join(", ")
    ))
}
