//! `Ready`, `Progressing` and `Degraded`, the conditions `kubectl wait`, Flux and Argo CD read.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};

use super::Reason;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConditionType {
    Ready,
    Progressing,
    Degraded,
    /// Pods are serving, whichever revision they run (a rolled-back service is Available
    /// while Ready=False says its update did not go live).
    Available,
    /// Every service in `dependsOn` is Ready now.
    DependenciesReady,
}

impl ConditionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Ready => "Ready",
            ConditionType::Progressing => "Progressing",
            ConditionType::Degraded => "Degraded",
            ConditionType::Available => "Available",
            ConditionType::DependenciesReady => "DependenciesReady",
        }
    }
}

/// The one word `status.state` holds, for services and phases alike. Stored as a string in
/// the CRD (printer columns, `kubectl wait --for=jsonpath`); read back through `parse`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    Ready,
    Progressing,
    Waiting,
    Degraded,
}

impl State {
    pub const ALL: [State; 4] = [
        State::Ready,
        State::Progressing,
        State::Waiting,
        State::Degraded,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            State::Ready => "Ready",
            State::Progressing => "Progressing",
            State::Waiting => "Waiting",
            State::Degraded => "Degraded",
        }
    }

    pub fn parse(text: &str) -> Option<State> {
        State::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// What an object's conditions say, decided once and written as three conditions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Health {
    /// Everything asked for runs and is ready.
    Ready { reason: String, message: String },
    /// Work is under way (rolling out, or waiting for something that is itself progressing).
    Progressing { reason: String, message: String },
    /// Held back on purpose or by an order constraint; not an error.
    Waiting { reason: String, message: String },
    /// Cannot progress without a change from the user.
    Degraded { reason: String, message: String },
}

impl Health {
    pub fn reason(&self) -> &str {
        match self {
            Health::Ready { reason, .. }
            | Health::Progressing { reason, .. }
            | Health::Waiting { reason, .. }
            | Health::Degraded { reason, .. } => reason,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Health::Ready { message, .. }
            | Health::Progressing { message, .. }
            | Health::Waiting { message, .. }
            | Health::Degraded { message, .. } => message,
        }
    }

    /// The one word `status.state` shows for it.
    pub fn state(&self) -> State {
        match self {
            Health::Ready { .. } => State::Ready,
            Health::Progressing { .. } => State::Progressing,
            Health::Waiting { .. } => State::Waiting,
            Health::Degraded { .. } => State::Degraded,
        }
    }

    pub fn is_ready(&self) -> bool {
        matches!(self, Health::Ready { .. })
    }

    /// Writes the three conditions into `conditions`.
    pub fn write(&self, conditions: &mut Vec<Condition>, generation: Option<i64>, now: &Time) {
        let (reason, message) = (self.reason(), self.message());
        let (ready, progressing, degraded) = match self {
            Health::Ready { .. } => (true, false, false),
            Health::Progressing { .. } | Health::Waiting { .. } => (false, true, false),
            Health::Degraded { .. } => (false, false, true),
        };
        let quiet = |on: bool, off_reason: Reason| -> String {
            if on {
                reason.to_string()
            } else {
                off_reason.into()
            }
        };
        set_condition(
            conditions,
            ConditionType::Ready,
            ready,
            reason,
            message,
            generation,
            now,
        );
        set_condition(
            conditions,
            ConditionType::Progressing,
            progressing,
            &if ready {
                Reason::RolloutComplete.into()
            } else {
                reason.to_string()
            },
            if progressing || ready {
                message
            } else {
                "not progressing: see Degraded"
            },
            generation,
            now,
        );
        set_condition(
            conditions,
            ConditionType::Degraded,
            degraded,
            &quiet(degraded, Reason::AsExpected),
            if degraded {
                message
            } else {
                "no problems found"
            },
            generation,
            now,
        );
    }
}

/// Sets one condition, keeping its `lastTransitionTime` unless its status changes: a
/// condition that only changes reason or message has not transitioned.
pub fn set_condition(
    conditions: &mut Vec<Condition>,
    type_: ConditionType,
    status: bool,
    reason: &str,
    message: &str,
    observed_generation: Option<i64>,
    now: &Time,
) {
    let status = if status { "True" } else { "False" }.to_string();
    let existing = conditions.iter_mut().find(|c| c.type_ == type_.as_str());
    let last_transition_time = match &existing {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => now.clone(),
    };
    let condition = Condition {
        type_: type_.as_str().to_string(),
        status,
        reason: reason.to_string(),
        message: message.to_string(),
        observed_generation,
        last_transition_time,
    };
    match existing {
        Some(c) => *c = condition,
        None => conditions.push(condition),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(s: i64) -> Time {
        Time(jiff::Timestamp::from_second(s).unwrap())
    }

    fn get<'a>(c: &'a [Condition], t: &str) -> &'a Condition {
        c.iter().find(|c| c.type_ == t).unwrap()
    }

    #[test]
    fn transition_time_moves_only_when_status_changes() {
        let mut conditions = Vec::new();
        let progressing = |m: &str| Health::Progressing {
            reason: "RollingOut".into(),
            message: m.into(),
        };
        progressing("0/1 ready").write(&mut conditions, Some(1), &time(100));
        progressing("still 0/1 ready").write(&mut conditions, Some(1), &time(200));
        assert_eq!(get(&conditions, "Ready").last_transition_time, time(100));
        assert_eq!(get(&conditions, "Ready").message, "still 0/1 ready");

        Health::Ready {
            reason: "RolloutComplete".into(),
            message: "1/1 ready".into(),
        }
        .write(&mut conditions, Some(2), &time(300));
        let ready = get(&conditions, "Ready");
        assert_eq!(
            (ready.status.as_str(), ready.last_transition_time.clone()),
            ("True", time(300))
        );
        assert_eq!(ready.observed_generation, Some(2));
        assert_eq!(get(&conditions, "Progressing").status, "False");
        assert_eq!(
            get(&conditions, "Progressing").last_transition_time,
            time(300)
        );
        // Degraded was False throughout: its transition time is from the first write.
        assert_eq!(get(&conditions, "Degraded").last_transition_time, time(100));
        assert_eq!(conditions.len(), 3);
    }

    #[test]
    fn degraded_sets_degraded_true_and_the_others_false() {
        let mut conditions = Vec::new();
        Health::Degraded {
            reason: "MissingSecret".into(),
            message: "Secret x not found".into(),
        }
        .write(&mut conditions, Some(1), &time(1));
        assert_eq!(get(&conditions, "Degraded").status, "True");
        assert_eq!(get(&conditions, "Degraded").reason, "MissingSecret");
        assert_eq!(get(&conditions, "Ready").status, "False");
        assert_eq!(get(&conditions, "Progressing").status, "False");
    }
}

#[cfg(test)]
mod state_tests {
    use super::State;

    #[test]
    fn every_state_reads_back_as_itself_and_nothing_else_is_one() {
        for state in State::ALL {
            assert_eq!(State::parse(state.as_str()), Some(state));
        }
        assert_eq!(State::parse("ready"), None);
    }
}
