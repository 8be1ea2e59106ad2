"""The kinds of the engine's timers (one heap of `(due, seq, kind, ref)`), in one place."""

GROUP_WAIT = 0  # ref: incident id; open it once group_wait has passed
FLUSH = 1  # ref: incident id; send the coalesced update (group_interval)
EXPIRE = 2  # ref: alert identity; resolve it at its ends_at
HOLD = 3  # ref: alert identity; a hold (hold-down, flapping, mute) ends
SETTLE = 4  # ref: incident id; resolve it if its alerts stayed resolved (resolve_hysteresis)
ESCALATE = 5  # ref: "incident id|generation"; the current escalation tier timed out
SLA = 6  # ref: "incident id|generation|acknowledge or resolve|warning or breach"; an SLA timer
