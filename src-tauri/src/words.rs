//! What the shell itself says (tray, notifications), in English or Arabic
//! after the system's locale (the window follows its own language setting).

/// The shell's texts in one language.
pub struct Words {
    pub open: &'static str,
    pub quit: &'static str,
    pub start_at_login: &'static str,
    pub all_healthy: &'static str,
    pub offline: &'static str,
    pub stopped: &'static str,
    pub background_title: &'static str,
    pub background_body: &'static str,
    arabic: bool,
}

const EN: Words = Words {
    open: "Open Orki Webhooks",
    quit: "Quit",
    start_at_login: "Start at login",
    all_healthy: "All webhooks healthy",
    offline: "Offline: deliveries held until the network is back",
    stopped: "The engine is not running",
    background_title: "Orki Webhooks keeps delivering",
    background_body: "The window is closed, but webhooks are still delivered in the background. To quit, choose Quit in the tray menu or run: orki-webhooks --quit",
    arabic: false,
};

const AR: Words = Words {
    open: "فتح Orki Webhooks",
    quit: "إنهاء",
    start_at_login: "التشغيل عند تسجيل الدخول",
    all_healthy: "كل الويبهوكات سليمة",
    offline: "غير متصل: التسليمات محتجزة حتى تعود الشبكة",
    stopped: "المحرك لا يعمل",
    background_title: "Orki Webhooks يواصل التسليم",
    background_body: "النافذة مغلقة، لكن الويبهوكات ما زالت تُسلَّم في الخلفية. للإنهاء اختر «إنهاء» من قائمة شريط النظام أو شغّل: orki-webhooks --quit",
    arabic: true,
};

impl Words {
    /// The texts for the system's locale (`LC_ALL`, `LC_MESSAGES`, `LANG`).
    pub fn for_locale() -> &'static Words {
        let locale = ["LC_ALL", "LC_MESSAGES", "LANG"]
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .find(|v| !v.is_empty())
            .unwrap_or_default();
        if locale.starts_with("ar") { &AR } else { &EN }
    }

    /// "2 webhooks failing".
    pub fn failing_count(&self, n: usize) -> String {
        match (self.arabic, n) {
            (false, 1) => "1 webhook failing".to_owned(),
            (false, n) => format!("{n} webhooks failing"),
            (true, 1) => "ويبهوك واحد يفشل".to_owned(),
            (true, n) => format!("{n} ويبهوكات تفشل"),
        }
    }

    /// "crm.office.lan/hooks — 12 failures in a row".
    pub fn failing_webhook(&self, label: &str, failures: u32) -> String {
        if self.arabic {
            format!("{label} — {failures} إخفاقات متتالية")
        } else {
            format!("{label} — {failures} failures in a row")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_naturally() {
        assert_eq!(EN.failing_count(1), "1 webhook failing");
        assert_eq!(EN.failing_count(3), "3 webhooks failing");
        assert_eq!(
            EN.failing_webhook("crm.lan/h", 12),
            "crm.lan/h — 12 failures in a row"
        );
        assert!(AR.failing_count(2).starts_with('2'));
    }
}
