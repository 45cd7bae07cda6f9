//! The gate: what every request passes before it is served, whatever carried it. It takes a
//! request's facts ([`Facts`]) and answers with where its session goes (or, for a web
//! request, a pass) or with a refusal (status, reason, headers), which the transport writes
//! its own way. It never sees a socket, a handshake or a protocol version: an HTTP/1.1
//! upgrade, a Hixie handshake and (next) an HTTP/2 extended CONNECT are decided alike.
//!
//! The steps, in order:
//! 1. [`Gate::admit`] (a session) or [`Gate::web`] (a file): `--max-connections` and
//!    `--max-connections-per-ip` (`admission`; web requests within a share of their own): a
//!    permit held for as long as the request is served, or 503 with `Retry-After`;
//! 2. authentication by the auth plugin (`--auth-plugin`): every WebSocket session, and web
//!    requests with `--web-auth`; the plugin's refusal (401 with a challenge, 403) is the
//!    answer;
//! 3. [`Gate::session`]'s target: the one static target, or where the request's token
//!    (`token`) leads by the token plugin; an unknown token is 404, a failing plugin 502, a
//!    slow one 504;
//! 4. `--allow-target`: the target is resolved and checked ([`Target::clear`]) before anything
//!    is answered, so a target that is not allowed is `403` like any refusal (not a `101`
//!    and a close, which told a client which tokens are valid and where they lead), and the
//!    session later connects to exactly what was checked.

pub mod admission;
pub mod token;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use tracing::Instrument;

use crate::config::limits::AllowList;
use crate::edge::http::Refusal;
use crate::plugin::{self, Answer, CallError, Reloadable};
use crate::request::{ClientAddr, Facts};
use crate::session::target::{Cleared, Target};
use crate::telemetry::logging::SPAN_TARGET;
use crate::telemetry::metrics::{self, HandshakeFailure, PluginResult};
use admission::{Admission, Connection, Permit, Refused};
use tokio::sync::OwnedSemaphorePermit;

/// The decisions every request of one server passes, shared by its connections.
#[derive(Debug)]
pub struct Gate {
    admission: Admission,
    auth: Option<Auth>,
    targets: Targets,
    /// `--allow-target` (`None`: any target).
    allow: Option<AllowList>,
    /// `-6`: IPv6 addresses first when a target's name is resolved to be checked.
    prefer_ipv6: bool,
}

/// `--auth-plugin`, and whether it guards the web directory too (`--web-auth`).
#[derive(Debug)]
pub struct Auth {
    pub plugin: Arc<Reloadable>,
    pub web: bool,
}

/// Where sessions go. A wrapped program is a static target by the time anything is served.
#[derive(Debug)]
pub enum Targets {
    /// Every session to one place: `target_addr:target_port`, `--unix-target`, or the
    /// wrapped program's port.
    Static(Target),
    /// Each session where its token leads (`--token-plugin`).
    Token {
        plugin: Arc<Reloadable>,
        /// `--host-token`: the token is the Host header without its port.
        host_token: bool,
    },
}

impl fmt::Display for Targets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Targets::Static(target) => write!(f, "{target}"),
            Targets::Token { plugin, .. } => {
                write!(f, "targets from token plugin {}", plugin.name())
            }
        }
    }
}

/// The step that turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// Over a connection limit.
    Admission(Refused),
    Authentication,
    TokenLookup,
    /// `--allow-target`.
    Target,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Stage::Admission(_) => f.write_str("admission"),
            Stage::Authentication => f.write_str("authentication"),
            Stage::TokenLookup => f.write_str("token lookup"),
            Stage::Target => f.write_str("target"),
        }
    }
}

/// A request the gate turned away: the answer for the client, and for the operator why.
#[derive(Debug)]
pub struct Denied {
    pub stage: Stage,
    pub refusal: Refusal,
    /// The reason the handshake-failure metric counts.
    pub failure: HandshakeFailure,
    /// What went wrong, for the log only: a plugin that failed rather than answered (the
    /// client gets a plain 502 or 504), a target that is not allowed (the client is not told
    /// where its token leads).
    pub fault: Option<String>,
}

impl Gate {
    pub fn new(
        admission: Admission,
        auth: Option<Auth>,
        targets: Targets,
        allow: Option<AllowList>,
        prefer_ipv6: bool,
    ) -> Gate {
        Gate {
            admission,
            auth,
            targets,
            allow,
            prefer_ipv6,
        }
    }

    pub fn targets(&self) -> &Targets {
        &self.targets
    }

    /// The plugins that SIGHUP re-creates, by the setting that named them.
    pub fn plugins(&self) -> impl Iterator<Item = (&'static str, &Arc<Reloadable>)> {
        let token = match &self.targets {
            Targets::Token { plugin, .. } => Some(("token_plugin", plugin)),
            Targets::Static(_) => None,
        };
        let auth = self.auth.as_ref().map(|a| ("auth_plugin", &a.plugin));
        token.into_iter().chain(auth)
    }

    /// A place for one more open connection; the accept loop waits for it before it accepts.
    pub async fn connection_place(&self) -> Option<OwnedSemaphorePermit> {
        self.admission.connection_place().await
    }

    /// Counts a connection accepted in `place` from `peer` (the client's address when the
    /// peer is the client) at accept, before any byte is read; refused (to be closed at once,
    /// counted) when that address holds too many already.
    pub fn accepted(
        &self,
        place: Option<OwnedSemaphorePermit>,
        peer: Option<std::net::IpAddr>,
    ) -> Result<Connection, Refused> {
        self.admission.accepted(place, peer)
    }

    /// A place among the requests served now for one more session from `client`, held until
    /// the permit is dropped.
    pub fn admit(&self, client: &ClientAddr) -> Result<Permit, Denied> {
        self.admission.admit(client.ip()).map_err(over_a_limit)
    }

    /// A web request's pass: a place in the web requests' share (waited for up to `wait`),
    /// then, with `--web-auth`, the auth plugin's.
    pub async fn web(&self, facts: &Facts, wait: Option<Duration>) -> Result<Permit, Denied> {
        let permit = self
            .admission
            .admit_web(facts.client.ip(), wait)
            .await
            .map_err(over_a_limit)?;
        match &self.auth {
            Some(auth) if auth.web => authenticate(&auth.plugin, facts).await?,
            _ => {}
        }
        Ok(permit)
    }

    /// Where a WebSocket session asked for by `facts` goes, once it is authenticated and
    /// its target cleared by `--allow-target`.
    pub async fn session(&self, facts: &Facts) -> Result<Cleared, Denied> {
        if let Some(auth) = &self.auth {
            authenticate(&auth.plugin, facts).await?;
        }
        let target = match &self.targets {
            Targets::Static(target) => target.clone(),
            Targets::Token { plugin, host_token } => look_up(plugin, facts, *host_token).await?,
        };
        target
            .clear(self.allow.as_ref(), self.prefer_ipv6)
            .await
            .map_err(|e| Denied {
                stage: Stage::Target,
                refusal: Refusal::new(StatusCode::FORBIDDEN, "target not allowed"),
                failure: HandshakeFailure::TargetNotAllowed,
                fault: Some(e.to_string()),
            })
    }
}

/// The answer to a request over a connection limit: 503 with `Retry-After`.
fn over_a_limit(refused: Refused) -> Denied {
    let failure = match refused {
        Refused::Total { .. } | Refused::Web { .. } => HandshakeFailure::MaxConnections,
        Refused::PerIp { .. } => HandshakeFailure::MaxConnectionsPerIp,
    };
    let refusal = Refusal::new(
        StatusCode::SERVICE_UNAVAILABLE,
        "too many connections, try again later",
    )
    .with_header(
        "Retry-After",
        crate::config::limits::RETRY_AFTER.to_string(),
    );
    Denied {
        stage: Stage::Admission(refused),
        refusal,
        failure,
        fault: None,
    }
}

/// Asks the auth plugin; a refusal is the plugin's own (status, reason and headers, e.g. a
/// Basic challenge).
async fn authenticate(plugin: &Reloadable, facts: &Facts) -> Result<(), Denied> {
    consult(
        plugin,
        facts,
        Stage::Authentication,
        false,
        |answer| match answer {
            Answer::Allow => Ok(()),
            _ => Err("the auth plugin gave a target"),
        },
    )
    .await
}

/// Asks the token plugin where the request's token leads, before anything is answered, so
/// that a token that leads nowhere gets a real HTTP answer.
async fn look_up(plugin: &Reloadable, facts: &Facts, host_token: bool) -> Result<Target, Denied> {
    consult(
        plugin,
        facts,
        Stage::TokenLookup,
        host_token,
        |answer| match answer {
            Answer::Target(target) => Ok(target),
            _ => Err("the token plugin gave no target"),
        },
    )
    .await
}

/// One plugin call for `stage` (authentication or the token lookup), in its span and
/// counted. A refusal is the plugin's own; `expect` takes any other answer, or says why it
/// is of the wrong kind (502); a failed call is 502, one that did not answer in time 504.
async fn consult<T>(
    plugin: &Reloadable,
    facts: &Facts,
    stage: Stage,
    host_token: bool,
    expect: impl FnOnce(Answer) -> Result<T, &'static str>,
) -> Result<T, Denied> {
    let instance = plugin.current();
    let name = instance.plugin_name();
    let auth = stage == Stage::Authentication;
    let span = if auth {
        tracing::info_span!(target: SPAN_TARGET, "auth", plugin = name)
    } else {
        tracing::info_span!(target: SPAN_TARGET, "token_lookup", plugin = name)
    };
    let asked = std::time::Instant::now();
    let answer = plugin::call(&instance, token::query(facts, host_token))
        .instrument(span)
        .await;
    metrics::get().plugin_call(name, auth, asked.elapsed());
    let (result, decided) = match answer.map(|a| match a {
        Answer::Refuse(refusal) => Err(refusal),
        other => Ok(expect(other)),
    }) {
        Ok(Ok(Ok(value))) => (PluginResult::Ok, Ok(value)),
        Ok(Err(refusal)) => (PluginResult::Refused, Err((refusal, None))),
        Ok(Ok(Err(wrong))) => (
            PluginResult::Error,
            Err((Refusal::new(StatusCode::BAD_GATEWAY, wrong), None)),
        ),
        Err(e @ CallError::Busy { .. }) => {
            let refusal = Refusal::new(e.status(), "too many requests at once, try again later")
                .with_header(
                    "Retry-After",
                    crate::config::limits::RETRY_AFTER.to_string(),
                );
            (call_result(&e), Err((refusal, Some(e.to_string()))))
        }
        Err(e) => {
            let why = if auth {
                "the authentication check failed"
            } else {
                "the token lookup failed"
            };
            let refusal = Refusal::new(e.status(), why);
            (call_result(&e), Err((refusal, Some(e.to_string()))))
        }
    };
    let m = metrics::get();
    if auth {
        m.auth_check(name, result);
    } else {
        m.token_lookup(name, result);
    }
    decided.map_err(|(refusal, fault)| Denied {
        stage,
        refusal,
        failure: match (result, auth) {
            (PluginResult::Refused, true) => HandshakeFailure::AuthRefused,
            (PluginResult::Refused, false) => HandshakeFailure::TokenRefused,
            (PluginResult::Busy, _) => HandshakeFailure::PluginBusy,
            _ => HandshakeFailure::PluginFailed,
        },
        fault,
    })
}

/// A failed plugin call as a metric result.
fn call_result(e: &CallError) -> PluginResult {
    match e {
        CallError::Failed { .. } => PluginResult::Error,
        CallError::Timeout { .. } => PluginResult::Timeout,
        CallError::Busy { .. } => PluginResult::Busy,
    }
}
