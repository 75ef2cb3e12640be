//! Whether an object's state changes are mailed, by keepalived's rules
//! (`vrrp_data.c`, `check_data.c`): an object's own `smtp_alert` wins;
//! unset, it takes `smtp_alert_vrrp` (instances, sync groups) or
//! `smtp_alert_checker` (virtual and real servers), then `smtp_alert`, then
//! a default that is "no" everywhere except on real servers, which
//! keepalived alerts for unless told otherwise.

use crate::config::global::Global;

/// A VRRP instance or sync group.
pub fn vrrp(global: &Global, own: Option<bool>) -> bool {
    own.or(global.smtp_alert_vrrp)
        .or(global.smtp_alert)
        .unwrap_or(false)
}

/// A service (virtual server): its quorum changes.
pub fn service(global: &Global, own: Option<bool>) -> bool {
    own.or(global.smtp_alert_checker)
        .or(global.smtp_alert)
        .unwrap_or(false)
}

/// A real server: what its checkers see.
pub fn real(global: &Global, own: Option<bool>) -> bool {
    own.or(global.smtp_alert_checker)
        .or(global.smtp_alert)
        .unwrap_or(true)
}

/// One checker of a real: its own `smtp_alert` (an xlb extension; keepalived
/// has none), else the real's.
pub fn check(global: &Global, real_own: Option<bool>, check_own: Option<bool>) -> bool {
    check_own.unwrap_or_else(|| real(global, real_own))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn global(all: Option<bool>, vrrp: Option<bool>, checker: Option<bool>) -> Global {
        Global {
            smtp_alert: all,
            smtp_alert_vrrp: vrrp,
            smtp_alert_checker: checker,
            ..Global::default()
        }
    }

    #[test]
    fn defaults_with_nothing_set() {
        let g = Global::default();
        assert!(!vrrp(&g, None), "instances and groups: no");
        assert!(!service(&g, None), "virtual servers: no");
        assert!(real(&g, None), "real servers: yes, as keepalived");
        assert!(check(&g, None, None), "checkers follow their real");
    }

    #[test]
    fn own_setting_wins_over_every_global() {
        let g = global(Some(true), Some(true), Some(true));
        assert!(!vrrp(&g, Some(false)));
        assert!(!service(&g, Some(false)));
        assert!(!real(&g, Some(false)));
        assert!(!check(&g, Some(true), Some(false)));
        let g = global(Some(false), Some(false), Some(false));
        assert!(vrrp(&g, Some(true)));
        assert!(service(&g, Some(true)));
        assert!(real(&g, Some(true)));
        assert!(check(&g, Some(false), Some(true)));
    }

    #[test]
    fn specific_global_wins_over_smtp_alert() {
        let g = global(Some(true), Some(false), None);
        assert!(
            !vrrp(&g, None),
            "smtp_alert_vrrp false beats smtp_alert true"
        );
        assert!(service(&g, None), "checker side falls back to smtp_alert");
        let g = global(Some(false), None, Some(true));
        assert!(!vrrp(&g, None));
        assert!(service(&g, None));
        assert!(real(&g, None));
        let g = global(Some(true), None, Some(false));
        assert!(vrrp(&g, None));
        assert!(!service(&g, None));
        assert!(!real(&g, None));
        assert!(!check(&g, None, None));
    }

    #[test]
    fn smtp_alert_false_turns_off_real_servers_default() {
        let g = global(Some(false), None, None);
        assert!(!real(&g, None));
        assert!(!check(&g, None, None));
        assert!(check(&g, None, Some(true)), "a checker can still ask");
    }
}
