//! Certificate exchange files (ODETTE_CERTIFICATE_*) received for us: stored, validated,
//! applied by policy and reported; a certificate request answered with our certificate, through
//! the partner's outbox when it has one. The cryptography is in `crate::security`.

use oftp_proto::codec::Sfid;

use crate::connection::{Connection, Origin, Work};
use crate::handle::OutgoingFile;
use crate::handler::{Handler, LogLevel, SessionInfo};
use crate::security::{CertificateExchange, SecurityContext};
use crate::transport::{FileServices, Transport};

impl<T: Transport, H: Handler, F: FileServices> Connection<T, H, F> {
    /// A received certificate-exchange file (ODETTE_CERTIFICATE_*) for us: stored, validated,
    /// applied by policy, reported to the handler (seed `CertificateReceived`).
    pub(super) async fn certificate_exchange(
        &mut self,
        sfid: &Sfid,
        placed: &std::path::Path,
        info: Option<&SessionInfo>,
    ) {
        let Some(kind) = CertificateExchange::from_virtual_file_name(&sfid.dsn) else {
            return;
        };
        let Some(sec) = self.shared.security.get().cloned() else {
            return;
        };
        if !sec.is_local(&sfid.destination) {
            return;
        }
        let signed = matches!(
            sfid.security,
            oftp_proto::codec::SecurityLevel::SIGNED
                | oftp_proto::codec::SecurityLevel::ENCRYPTED_AND_SIGNED
        );
        let (orig, file, dir, ctx) = (
            sfid.originator.clone(),
            placed.to_owned(),
            self.shared.data_dir.join("certificates"),
            sec.clone(),
        );
        let got = tokio::task::spawn_blocking(move || {
            ctx.receive_certificate(&orig, kind, &file, &dir, signed)
        })
        .await;
        let got = match got {
            Ok(got) => got.map_err(|e| e.to_string()),
            Err(e) => Err(format!("certificate task failed: {e}")),
        };
        match got {
            Ok(mut cert) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate {} from {} stored in {}{}",
                        cert.certificate.subject(),
                        sfid.originator,
                        cert.stored.display(),
                        if cert.replaced {
                            " and now used for this partner"
                        } else {
                            ""
                        }
                    ),
                )
                .await;
                if kind == CertificateExchange::Request {
                    cert.answered = self.answer_certificate_request(&sec, sfid).await;
                }
                if let Some(info) = info {
                    self.handler.certificate_received(info, &cert).await;
                }
            }
            Err(e) => {
                self.error(format!(
                    "certificate exchange file from {}: {e}",
                    sfid.originator
                ))
                .await
            }
        }
    }

    /// Answers a partner's ODETTE_CERTIFICATE_REQUEST with an ODETTE_CERTIFICATE_DELIVER
    /// carrying our certificate (DER), when the partner's `answer_certificate_requests` allows
    /// it: in this session when we may still send in it, otherwise from the partner's outbox
    /// in the next session. The answer goes through the partner's outbox whenever it has one,
    /// so it is durable before it is offered and survives a broken connection. `true` when an
    /// answer is on its way.
    async fn answer_certificate_request(&mut self, sec: &SecurityContext, sfid: &Sfid) -> bool {
        let origin = &sfid.originator;
        let Some(params) = &self.params else {
            return false;
        };
        // SFIDORIG is whatever the sender writes: only the partner that logged in to this
        // session (password, and secure authentication where configured) gets an answer.
        if params.partner_sfid != **origin {
            self.log(
                LogLevel::Info,
                format!(
                    "certificate request from {origin} arrived in a session with {}: not answered \
                     (only the partner that logged in is answered)",
                    params.partner_name
                ),
            )
            .await;
            return false;
        }
        let cert = match sec.certificate_request_answer(origin) {
            Ok(Some(c)) => c.clone(),
            Ok(None) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate request from {origin} not answered automatically \
                         (answer_certificate_requests is off for this partner)"
                    ),
                )
                .await;
                return false;
            }
            Err(e) => {
                self.log(
                    LogLevel::Info,
                    format!("certificate request from {origin} not answered: {e}"),
                )
                .await;
                return false;
            }
        };
        let can_send_now = self.negotiated.as_ref().is_some_and(|n| n.can_send);
        let outbox = params.outbox.clone();
        let kind = CertificateExchange::Deliver;
        let path = match &outbox {
            Some(dir) => dir.join(kind.virtual_file_name()),
            None => self
                .shared
                .data_dir
                .join("certificates")
                .join("own")
                .join(format!("{}.cer", cert.thumbprint_sha256_hex())),
        };
        let (target, der) = (path.clone(), cert.der().to_vec());
        let written =
            tokio::task::spawn_blocking(move || crate::store::write_atomic(&target, &der))
                .await
                .map_err(|e| e.to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
        if let Err(e) = written {
            self.error(format!(
                "cannot answer the certificate request from {origin}: {e}"
            ))
            .await;
            return false;
        }
        let how = match (&outbox, can_send_now) {
            // The outbox is read at our first turn; after that the answer joins the queue.
            (Some(_), true) => {
                if self.outbox_scanned {
                    self.queue.push_back(Work::File {
                        file: OutgoingFile::certificate_exchange(kind, &path),
                        origin: Origin::Outbox,
                    });
                }
                "in this session"
            }
            (Some(_), false) => "in the next session",
            (None, true) => {
                self.queue.push_back(Work::File {
                    file: OutgoingFile::certificate_exchange(kind, &path),
                    origin: Origin::Request,
                });
                "in this session"
            }
            (None, false) => {
                self.log(
                    LogLevel::Info,
                    format!(
                        "certificate request from {origin} not answered: this session cannot \
                         send and the partner has no outbox; our certificate is in {}",
                        path.display()
                    ),
                )
                .await;
                return false;
            }
        };
        self.log(
            LogLevel::Info,
            format!(
                "answering the certificate request from {origin} with {} ({}) {how}",
                kind.virtual_file_name(),
                cert.subject()
            ),
        )
        .await;
        true
    }
}
