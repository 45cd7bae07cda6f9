//! websockify's `JWTTokenApi`: the token is a signed JWT whose claims carry the target
//! (`host`, and `port` as a number or string). `nbf` and `exp` are enforced when present, with
//! no leeway, as websockify does; a token that fails any check is an unknown token (404).
//!
//! The source is a key file, read once at start:
//! - a PEM public key (RSA: RS256/384/512 and PS256/384/512; EC P-256/P-384: ES256/ES384),
//!   or a PEM certificate's key is not accepted: give the key itself;
//! - otherwise a symmetric key for HS256/384/512, written as websockify's jwcrypto reads it:
//!   the JWK `k` value, base64url-encoded (whitespace ignored).
//!
//! Only the algorithms the key allows are accepted, so a token cannot choose `none` or switch
//! an RSA key to HMAC. Encrypted tokens (JWE), which websockify also reads, are not supported:
//! they are refused like any invalid token.

use std::collections::HashSet;

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use websockify_plugin_api::{Kind, Outcome, Plugin, Request};

/// `JWTTokenApi`.
pub struct JWTTokenApi {
    key: DecodingKey,
    algorithms: Vec<Algorithm>,
}

impl std::fmt::Debug for JWTTokenApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JWTTokenApi")
            .field("algorithms", &self.algorithms)
            .finish_non_exhaustive()
    }
}

fn key_from(data: &[u8]) -> Result<(DecodingKey, Vec<Algorithm>), String> {
    use Algorithm::*;
    let text = String::from_utf8_lossy(data);
    if text.contains("-----BEGIN") {
        if text.contains("PRIVATE KEY") || text.contains("CERTIFICATE") {
            return Err("give the public key in PEM (not a private key or a certificate)".into());
        }
        if let Ok(key) = DecodingKey::from_rsa_pem(data) {
            return Ok((key, vec![RS256, RS384, RS512, PS256, PS384, PS512]));
        }
        if let Ok(key) = DecodingKey::from_ec_pem(data) {
            return Ok((key, vec![ES256, ES384]));
        }
        return Err("the PEM key is neither RSA nor EC".into());
    }
    let k: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(k.trim_end_matches('='))
        .map_err(|_| "a symmetric key must be the JWK `k` value in base64url".to_string())?;
    if secret.is_empty() {
        return Err("the symmetric key is empty".into());
    }
    Ok((DecodingKey::from_secret(&secret), vec![HS256, HS384, HS512]))
}

fn unknown(why: &str) -> Outcome {
    Outcome::Refuse {
        status: 404,
        reason: format!("invalid token: {why}"),
    }
}

impl Plugin for JWTTokenApi {
    const NAME: &'static str = "JWTTokenApi";
    const KIND: Kind = Kind::Resolver;

    fn create(config: &str) -> Result<Self, String> {
        if config.is_empty() {
            return Err("needs --token-source KEYFILE".to_string());
        }
        let data = std::fs::read(config).map_err(|e| format!("cannot read {config}: {e}"))?;
        let (key, algorithms) = key_from(&data).map_err(|e| format!("{config}: {e}"))?;
        Ok(JWTTokenApi { key, algorithms })
    }

    fn call(&self, request: &Request<'_>) -> Outcome {
        if request.token.is_empty() {
            return Outcome::Refuse {
                status: 404,
                reason: "no token given".to_string(),
            };
        }
        let header = match jsonwebtoken::decode_header(request.token) {
            Ok(h) => h,
            Err(_) => return unknown("not a JWT"),
        };
        if !self.algorithms.contains(&header.alg) {
            return unknown("algorithm not allowed for this key");
        }
        let mut validation = Validation::new(header.alg);
        validation.algorithms = self.algorithms.clone();
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false;
        let claims = match jsonwebtoken::decode::<serde_json::Value>(
            request.token,
            &self.key,
            &validation,
        ) {
            Ok(data) => data.claims,
            Err(e) => return unknown(&e.to_string()),
        };
        let host = claims.get("host").and_then(|h| h.as_str()).unwrap_or("");
        let port = match claims.get("port") {
            Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
            Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        };
        match (host, port) {
            ("", _) | (_, None) => unknown("no host and port claims"),
            (host, Some(port)) if host.contains(':') && !host.starts_with('[') => {
                Outcome::Target(format!("[{host}]:{port}"))
            }
            (host, Some(port)) => Outcome::Target(format!("{host}:{port}")),
        }
    }
}
