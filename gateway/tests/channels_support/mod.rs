//! Shared fixtures of the channels tests: the docs/contract.md §5 example alarm.

use gridwatch::config::{Locale, SiteConfig};
use gridwatch::model::*;
use gridwatch::notification::{MessageContext, Notification};

pub fn site() -> SiteConfig {
    SiteConfig {
        id: "xihu-longjing".into(),
        name: "龙井苑小区".into(),
        locale: Locale::ZhCn,
        plan: None,
        plan_svg: None,
    }
}

/// A critical smoke alarm at 3幢2单元501室 (张奶奶, 82, lives alone) for one recipient.
pub fn notification(channel: ChannelKind, address: &str) -> Notification {
    Notification {
        delivery_id: "01JDDELIVERY0000000000001".into(),
        event: EventKind::Raised,
        alarm: AlarmView {
            id: "01JDALARM000000000000000A".into(),
            site: "xihu-longjing".into(),
            kind: AlarmKind::Smoke,
            severity: Severity::Critical,
            state: AlarmState::ActiveUnacked,
            condition: Condition::Firing,
            device_id: "smk-3-2-501-k".into(),
            household_id: "h-3-2-501".into(),
            address: "3幢2单元501室".into(),
            location: "厨房".into(),
            opened_at: "2026-11-24T10:00:00.123Z".into(),
            value: Some(0.21),
            threshold: Some(0.15),
            unit: "dB/m".into(),
            trigger: None,
        },
        recipient: Recipient {
            contact_id: "c-xihu-119".into(),
            role: Role::FireBrigade,
            name: "西湖消防中队值班室".into(),
        },
        channel,
        address: address.into(),
        ack_url: "http://127.0.0.1:8080/ack/tok123".into(),
        context: MessageContext {
            locale: Locale::ZhCn,
            site_name: "龙井苑小区".into(),
            residents: vec![ResidentInfo {
                name: "张奶奶".into(),
                lives_alone: true,
                age: Some(82),
            }],
            others_notified: vec!["王芳(网格员)".into()],
            reading_ts: 1_795_514_400_123,
            peak: Some(0.21),
            count: 1,
            actor: None,
            cause: None,
            note: None,
            robot_mentions: Vec::new(),
            sounder: None,
        },
        created: 1_795_514_400_200,
    }
}
