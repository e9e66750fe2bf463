//! Assignment: a unit's arm from a hash, stored nowhere.
//!
//! The unit key (an account's domain, lowercased) and the experiment's salt give a *bucket*: the first 53 bits of
//! SHA-256(salt ‖ 0x00 ‖ key) as a number in [0, 1). A unit is in the control arm when its bucket is below the
//! control share. So every instance, after every restart, puts a unit in the same arm; and changing `control`
//! moves only the units whose bucket lies between the old and the new share (from 0.5 to 0.3: the units with a
//! bucket in [0.3, 0.5) move from control to treatment, no other unit moves). A new salt reshuffles everyone —
//! that is what a new salt is for (a fresh experiment on the same rules).

use super::Arm;

/// The unit's position in [0, 1) for this salt.
pub fn bucket(salt: &str, key: &str) -> f64 {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(&[0]);
    if key.bytes().any(|b| b.is_ascii_uppercase()) {
        ctx.update(key.to_ascii_lowercase().as_bytes());
    } else {
        ctx.update(key.as_bytes());
    }
    let digest = ctx.finish();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// The arm of a unit at `bucket` when `control` of the units are held out.
pub fn arm(bucket: f64, control: f64) -> Arm {
    if bucket < control {
        Arm::Control
    } else {
        Arm::Treatment
    }
}

/// A fresh visitor id (128 random bits as 32 hex digits), for `unit = "visitor"` experiments; `None` if the OS
/// random source fails (the visitor then takes no part).
pub fn new_visitor_id() -> Option<String> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// The `Set-Cookie` value that keeps `id` (host-only and `Secure` over HTTPS), or, with `None`, expires the cookie
/// (the visitor no longer permits the personal tier: no identifier is kept).
pub fn visitor_set_cookie(id: Option<&str>, secure: bool, max_age: u64) -> String {
    let name = super::visitor_cookie_name(secure);
    let tail = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{name}={id}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{tail}"),
        None => format!("{name}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax{tail}"),
    }
}
