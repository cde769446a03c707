//! Session start: the initiator's and the responder's session configuration (capabilities,
//! passwords), the SSID decision (partner table, handler, listener admission, TLS rules), secure
//! authentication (AUCH/AURP) and the point where the session counts as established. Does not
//! move bytes (the driver in `mod.rs` does) nor handle files.

use std::time::Duration;

use oftp_proto::codec::{Password as WirePassword, ProtocolLevel};
use oftp_proto::session::{
    Capabilities, InitiatorConfig, Negotiated, ResponderConfig, ResponderParams, Session,
};

use crate::connection::error::{AuthStepError, ConnectionError};
use crate::connection::{Connection, ConnectionParts, InitiatorSetup, Params};
use crate::handler::{
    Handler, LogLevel, SessionAcceptance, SessionDecision, SessionInfo, SessionRequest,
};
use crate::identity::OdetteId;
use crate::listener::Admission;
use crate::policy::{self, PeerOffer};
use crate::security::{SecurityContext, SecurityError};
use crate::transport::{FileServices, Transport};

fn capabilities(
    level: ProtocolLevel,
    buffer_size: u32,
    credit: u16,
    compression: bool,
    restart: bool,
    mode: crate::config::Mode,
) -> Capabilities {
    Capabilities {
        max_level: level,
        buffer_size,
        credit,
        compression,
        restart,
        mode: policy::wire_mode(mode),
        secure_auth: false,
    }
}

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// A responder connection (server side).
    pub(crate) fn responder(parts: ConnectionParts<T, H, F>) -> Self {
        let now = super::now();
        let session = Session::responder(
            ResponderConfig {
                inactivity_timeout: parts.shared.inactivity_timeout,
            },
            now,
        );
        Self::new(parts, session, None)
    }

    /// An initiator connection (client side).
    pub(crate) fn initiator(
        parts: ConnectionParts<T, H, F>,
        setup: InitiatorSetup,
    ) -> Result<Self, oftp_proto::session::UsageError> {
        let shared = &parts.shared;
        let l = &shared.limits;
        let mut cfg = InitiatorConfig::new(
            shared.codes.ssid.to_string(),
            WirePassword::new(
                setup
                    .partner
                    .our_password(&shared.local.password)
                    .expose()
                    .to_owned(),
            ),
        );
        cfg.capabilities = capabilities(
            ProtocolLevel(l.level),
            l.buffer_size,
            l.credit,
            l.compression,
            l.restart,
            l.mode,
        );
        cfg.expected_peer_code = Some(setup.partner.ssid.clone());
        cfg.expected_peer_password = Some(WirePassword::new(setup.partner.password.expose()));
        cfg.inactivity_timeout = shared.inactivity_timeout;
        if let Some(sec) = shared.security.get() {
            // `required` asks for it and never accepts a session without it (the peer's SSID
            // must agree, else ESID 12).
            cfg.capabilities.secure_auth = sec
                .secure_auth_decision(setup.partner_codes.ssid.as_str(), None)
                .map_err(|e| oftp_proto::session::UsageError::Config(e.to_string()))?;
        }
        let session = Session::initiator(cfg, super::now())?;
        Ok(Self::new(parts, session, Some(setup)))
    }

    pub(super) async fn on_ssid(&mut self, peer: oftp_proto::codec::Ssid) {
        self.login_deadline = None;
        self.claimed_ssid = Some(peer.code.clone());
        // The code as the runtime compares it, normalised once here. The codec upper-cases and
        // drops the padding, so only a blank code is refused: no partner can have it (ESID 03).
        let peer_ssid = match OdetteId::new(&peer.code) {
            Ok(code) => code,
            Err(error) => {
                self.reject_session_for(&ConnectionError::InvalidSsid {
                    code: peer.code.clone(),
                    error,
                });
                return;
            }
        };
        let offer = PeerOffer {
            ssid: &peer_ssid,
            password: peer.password.expose(),
            level: peer.level,
            buffer_size: peer.buffer_size,
            credit: peer.credit,
            compression: peer.compression,
            restart: peer.restart,
        };
        let sh = &self.shared;
        let partners = sh.partners();
        let default = policy::session_decision(
            &sh.local,
            &sh.codes,
            &partners,
            &sh.limits,
            &sh.data_dir,
            &offer,
        );
        let req = SessionRequest::new(
            self.conn,
            peer_ssid.clone(),
            crate::config::Password::new(peer.password.expose()),
            peer.level,
            peer.buffer_size,
            peer.credit,
            policy::local_mode(peer.mode),
            peer.compression,
            peer.restart,
            peer.secure_auth,
            peer.user_data.clone(),
            partners.by_code(&peer_ssid).map(|(p, _)| p.clone()),
            default,
        );
        let decision = self.handler.accept_session(&req).await;
        match decision {
            SessionDecision::Accept(a) => {
                // The listener's limits (connections in all, sessions per address): resources
                // not available, retry later (RFC 5024 5.3.11, ESID 08).
                if let Some(Err(why)) = self.admission.as_mut().map(Admission::log_in) {
                    self.reject_session_for(&ConnectionError::NotAdmitted(why));
                    return;
                }
                // Transport and secure-authentication rules hold whatever the handler said:
                // a partner that must authenticate is never let in without it.
                let secure_auth = match self.responder_security(&peer) {
                    Ok(b) => b,
                    Err(refused) => {
                        self.reject_session_for(&refused);
                        return;
                    }
                };
                let mut caps = capabilities(
                    a.level,
                    a.buffer_size,
                    a.credit,
                    a.compression,
                    a.restart,
                    a.mode,
                );
                caps.secure_auth = secure_auth;
                let params = ResponderParams {
                    ssid_code: a.local_ssid.to_string(),
                    password: WirePassword::new(a.local_password.expose()),
                    user_data: String::new(),
                    capabilities: caps,
                };
                match self.session.accept_session(params) {
                    Ok(()) => self.accepted(a, peer_ssid),
                    Err(e) => {
                        let problem = ConnectionError::CannotAccept(e);
                        self.error(problem.to_string()).await;
                        self.reject_session_for(&problem);
                    }
                }
            }
            SessionDecision::Reject { reason, text } => {
                let _ = self.session.reject_session(reason, &text);
            }
        }
    }

    /// Responder: whether to use secure authentication with this peer, or the ESID to refuse
    /// it with (1.x over TLS: 10; a TLS client certificate bound to another partner: 03;
    /// secure-authentication policy: 12).
    fn responder_security(&self, peer: &oftp_proto::codec::Ssid) -> Result<bool, ConnectionError> {
        if self.v2_only && !peer.level.is_v2() {
            return Err(ConnectionError::NeedsV2);
        }
        if let Some(cert) = &self.bound_cert {
            // The user code does not fit the identity the transport proved (RFC 5024 ESID
            // 03: "unknown or invalid Identification Code").
            let owner = self
                .shared
                .security
                .get()
                .and_then(|sec| sec.partner_by_ssid(&peer.code))
                .filter(|p| p.owns_tls_client_certificate(cert));
            if owner.is_none() {
                return Err(ConnectionError::NotCertificateOwner {
                    subject: cert.subject().to_string(),
                    code: peer.code.clone(),
                });
            }
        }
        match self.shared.security.get() {
            // Without security settings we never authenticate; the session refuses a peer
            // that asks for it (ESID 12).
            None => Ok(false),
            Some(sec) => sec
                .secure_auth_decision(&peer.code, Some(peer.secure_auth))
                .map_err(ConnectionError::SecureAuthPolicy),
        }
    }

    /// Sessions on this connection must use OFTP 2.0 (TLS).
    pub(crate) fn require_v2(mut self, v2_only: bool) -> Self {
        self.v2_only = v2_only;
        self
    }

    /// The session on this connection must log in as the partner owning `cert` (its TLS
    /// client certificate).
    pub(crate) fn bind_peer_certificate(
        mut self,
        cert: Option<oftp_security::Certificate>,
    ) -> Self {
        self.bound_cert = cert;
        self
    }

    /// Responder: the listener's admission, and the time by which the SSID must arrive (ESID
    /// 09 otherwise; `timeout` is the configured login timeout, for the message).
    pub(crate) fn admitted(
        mut self,
        admission: Admission,
        deadline: tokio::time::Instant,
        timeout: Duration,
    ) -> Self {
        self.admission = Some(admission);
        self.login_deadline = Some((deadline, timeout));
        self
    }

    /// Runs a secure-authentication step (a private-key operation) with the security settings
    /// on the blocking pool; `missing` when there are none.
    async fn challenge_task<R: Send + 'static>(
        &self,
        missing: &'static str,
        step: impl FnOnce(&SecurityContext) -> Result<R, SecurityError> + Send + 'static,
    ) -> Result<R, AuthStepError> {
        match self.shared.security.get() {
            Some(sec) => {
                let sec = sec.clone();
                Ok(tokio::task::spawn_blocking(move || step(&sec)).await??)
            }
            None => Err(AuthStepError::NotConfigured(missing)),
        }
    }

    /// Secure authentication: our turn to answer the peer's challenge.
    pub(super) async fn on_auth_challenge(&mut self, challenge: Vec<u8>) {
        let answer = self
            .challenge_task("no authentication key is configured", move |sec| {
                sec.answer_challenge(&challenge)
            })
            .await;
        match answer {
            Ok(a) => {
                if let Err(e) = self.session.answer_challenge(a) {
                    self.error(format!("cannot answer the challenge: {e}"))
                        .await;
                }
            }
            Err(text) => {
                // RFC 5024 9.8.2 row I: the receiver of an AUCH answers with an AURP, there is
                // no other transition; the challenger finds the answer wrong and ends the
                // session with ESID 11 (row K). The answer is random, so it cannot match.
                self.error(format!(
                    "secure authentication failed: cannot open the partner's challenge: {text}; \
                     answering it with octets that cannot match, the partner will end the \
                     session (ESID 11)"
                ))
                .await;
                let mut unanswerable = [0u8; 20];
                if aws_lc_rs::rand::fill(&mut unanswerable).is_err() {
                    self.send_refusal(&ConnectionError::NoRandom);
                } else if let Err(e) = self.session.answer_challenge(unanswerable) {
                    self.error(format!("cannot answer the challenge: {e}"))
                        .await;
                }
            }
        }
    }

    /// Secure authentication: our turn to challenge the peer.
    pub(super) async fn on_auth_challenge_requested(&mut self) {
        let ssid = match (&self.initiator, &self.info) {
            (Some(setup), _) => setup.partner_codes.ssid.to_string(),
            (None, Some(info)) => info.peer_ssid.to_string(),
            (None, None) => String::new(),
        };
        let challenge = self
            .challenge_task("no security settings", move |sec| {
                sec.create_challenge(&ssid)
            })
            .await;
        match challenge {
            Ok((envelope, expected)) => {
                if let Err(e) = self.session.send_challenge(envelope, expected) {
                    self.error(format!("cannot send the challenge: {e}")).await;
                }
            }
            Err(text) => {
                let problem = ConnectionError::ChallengeFailed(text);
                self.error(problem.to_string()).await;
                self.send_refusal(&problem);
            }
        }
    }

    fn accepted(&mut self, a: SessionAcceptance, peer_ssid: OdetteId) {
        let partners = self.shared.partners();
        let record_mapping = partners
            .by_name(&a.partner_name)
            .or_else(|| partners.by_code(&peer_ssid).map(|(p, _)| p))
            .map(|p| p.record_mapping)
            .unwrap_or_default();
        self.params = Some(Params {
            partner_name: a.partner_name.clone(),
            partner_sfid: a.partner_sfid,
            local_sfid: a.local_sfid,
            inbox: a.inbox,
            outbox: a.outbox,
            record_mapping,
        });
        self.info = Some(SessionInfo {
            id: self.conn.id,
            peer: self.conn.peer,
            peer_ssid,
            partner_name: a.partner_name,
            level: a.level,
            handle: self.handle.clone(),
        });
    }

    pub(super) async fn on_established(&mut self, negotiated: Negotiated) {
        if let Some(setup) = &self.initiator {
            let p = &setup.partner;
            self.params = Some(Params {
                partner_name: p.name.clone(),
                partner_sfid: setup.partner_codes.sfid.clone(),
                local_sfid: self.shared.codes.sfid.clone(),
                inbox: setup.receive_dir.clone(),
                outbox: None,
                record_mapping: p.record_mapping,
            });
            self.info = Some(SessionInfo {
                id: self.conn.id,
                peer: self.conn.peer,
                peer_ssid: setup.partner_codes.ssid.clone(),
                partner_name: p.name.clone(),
                level: negotiated.level,
                handle: self.handle.clone(),
            });
        }
        if let Some(info) = &mut self.info {
            info.level = negotiated.level;
        }
        let secure_auth = negotiated.secure_auth;
        self.negotiated = Some(negotiated);
        // With secure authentication the session is established only once both sides have
        // proved their identity (`Event::Authenticated`); a failed challenge ends it first.
        if !secure_auth {
            self.session_established().await;
        }
    }

    /// The session is established (SSIDs agreed, and secure authentication passed when
    /// used): says so, queues the end responses still owed to the partner, tells the handler.
    pub(super) async fn session_established(&mut self) {
        let Some(n) = &self.negotiated else {
            return;
        };
        self.logged_in = true;
        let message = format!(
            "session with {} established: level {}, buffer {}, credit {}, compression {}, restart {}{}",
            n.peer.code,
            n.level.0,
            n.buffer_size,
            n.credit,
            n.compression,
            n.restart,
            if n.secure_auth {
                ", secure authentication passed"
            } else {
                ""
            }
        );
        self.log(LogLevel::Info, message).await;
        // The partner's name is on record before its first file arrives.
        self.write_trail(None).await;
        self.queue_pending_end_responses().await;
        if let Some(info) = self.info.clone() {
            self.handler.session_started(&info).await;
        }
    }
}
