/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* What mycelia-node does when a daemon starts, becomes ready, misses its watchdog or exits,
 * decided without I/O: the caller carries out the returned actions (fork, kill, print). */
#include <signal.h>

#include "node-supervisor.h"

const SupervisorTimeouts supervisor_default_timeouts = {
        .start = 15 * USEC_PER_SEC,
        .stop = 10 * USEC_PER_SEC,      /* as TimeoutStopSec= of the units: shimd drains for up to 8 s */
        .watchdog = 10 * USEC_PER_SEC,
        .restart_min = 100 * USEC_PER_MSEC,
        .restart_max = 5 * USEC_PER_SEC,
        .restart_reset = 10 * USEC_PER_SEC,
};

static const char *const unit_state_table[] = {
        [UNIT_INACTIVE] = "inactive",
        [UNIT_STARTING] = "starting",
        [UNIT_RUNNING] = "running",
        [UNIT_STOPPING] = "stopping",
        [UNIT_AUTO_RESTART] = "auto-restart",
        [UNIT_DEAD] = "dead",
};

const char *unit_state_to_string(UnitState s) {
        if ((size_t) s >= ELEMENTSOF(unit_state_table))
                return "unknown";
        return unit_state_table[s];
}

static void push(SupervisorActions *out, SupervisorActionType type, size_t unit, int sig, const char *reason) {
        /* At most one action per unit and event plus READY/DONE fit; the bound is a safety net. */
        if (!out || out->n >= ELEMENTSOF(out->actions))
                return;
        out->actions[out->n++] = (SupervisorAction) {
                .type = type,
                .unit = unit,
                .signal = sig,
                .reason = reason,
        };
}

static usec_t add_clamp(usec_t a, usec_t b) {
        return a > USEC_INFINITY - b ? USEC_INFINITY : a + b;
}

void supervisor_init(Supervisor *s, const SupervisorTimeouts *timeouts) {
        *s = (Supervisor) {
                .timeouts = timeouts ? *timeouts : supervisor_default_timeouts,
                .phase = SUPERVISOR_STARTING,
        };
}

int supervisor_add_unit(Supervisor *s, const char *name) {
        if (s->n_units >= SUPERVISOR_UNITS_MAX)
                return -E2BIG;
        s->units[s->n_units] = (Unit) {
                .name = name,
                .state = UNIT_INACTIVE,
                .timer = USEC_INFINITY,
                .watchdog_at = USEC_INFINITY,
                .restart_delay = s->timeouts.restart_min,
        };
        return (int) s->n_units++;
}

usec_t supervisor_restart_delay(const SupervisorTimeouts *t, usec_t previous, usec_t ran, usec_t *next) {
        usec_t delay = previous;

        if (ran >= t->restart_reset || delay < t->restart_min)
                delay = t->restart_min;
        if (delay > t->restart_max)
                delay = t->restart_max;
        if (next)
                *next = delay > t->restart_max / 2 ? t->restart_max : delay * 2;
        return delay;
}

static void unit_request_start(Supervisor *s, size_t i, SupervisorActions *out) {
        Unit *u = &s->units[i];

        u->state = UNIT_STARTING;
        u->pid = 0;
        u->timer = USEC_INFINITY;       /* set by supervisor_unit_started() */
        u->watchdog_at = USEC_INFINITY;
        push(out, SUPERVISOR_ACTION_START, i, 0, u->ever_ready ? "restart" : "start");
}

void supervisor_begin(Supervisor *s, usec_t now, SupervisorActions *out) {
        if (s->n_units == 0) {
                s->phase = SUPERVISOR_RUNNING;
                s->ready_announced = true;
                push(out, SUPERVISOR_ACTION_READY, 0, 0, "ready");
                return;
        }
        unit_request_start(s, 0, out);
}

void supervisor_unit_started(Supervisor *s, size_t i, pid_t pid, usec_t now) {
        Unit *u;

        if (i >= s->n_units)
                return;
        u = &s->units[i];
        u->pid = pid;
        u->started_at = now;
        u->timer = add_clamp(now, s->timeouts.start);
}

static bool all_down(const Supervisor *s) {
        for (size_t i = 0; i < s->n_units; i++)
                if (s->units[i].pid > 0)
                        return false;
        return true;
}

static void check_done(Supervisor *s, SupervisorActions *out) {
        if (s->phase != SUPERVISOR_STOPPING || !all_down(s))
                return;
        s->phase = SUPERVISOR_DONE;
        push(out, SUPERVISOR_ACTION_DONE, 0, 0, "stopped");
}

static void unit_kill(Supervisor *s, size_t i, int sig, usec_t now, const char *reason, SupervisorActions *out) {
        Unit *u = &s->units[i];

        u->state = UNIT_STOPPING;
        u->watchdog_at = USEC_INFINITY;
        /* After SIGKILL nothing is left to escalate to: wait for the exit. */
        u->timer = sig == SIGKILL ? USEC_INFINITY : add_clamp(now, s->timeouts.stop);
        push(out, SUPERVISOR_ACTION_SIGNAL, i, sig, reason);
}

void supervisor_stop(Supervisor *s, usec_t now, int exit_status, SupervisorActions *out) {
        bool escalate = s->phase == SUPERVISOR_STOPPING;

        if (s->phase == SUPERVISOR_DONE)
                return;
        if (!escalate) {
                s->phase = SUPERVISOR_STOPPING;
                s->exit_status = exit_status;
        } else if (exit_status != 0 && s->exit_status == 0)
                s->exit_status = exit_status;

        /* Reverse start order, as systemd stops units after their dependents. */
        for (size_t j = s->n_units; j > 0; j--) {
                size_t i = j - 1;
                Unit *u = &s->units[i];

                if (u->pid > 0) {
                        if (escalate)
                                unit_kill(s, i, SIGKILL, now, "stop (again)", out);
                        else if (u->state != UNIT_STOPPING)
                                unit_kill(s, i, SIGTERM, now, "stop", out);
                        /* Already stopping (watchdog, start timeout): its SIGKILL timer runs. */
                } else {
                        u->state = UNIT_DEAD;
                        u->timer = USEC_INFINITY;
                        u->watchdog_at = USEC_INFINITY;
                }
        }
        check_done(s, out);
}

int supervisor_unit_by_pid(const Supervisor *s, pid_t pid) {
        if (pid <= 0)
                return -ESRCH;
        for (size_t i = 0; i < s->n_units; i++)
                if (s->units[i].pid == pid)
                        return (int) i;
        return -ESRCH;
}

int supervisor_on_ready(Supervisor *s, pid_t pid, usec_t now, SupervisorActions *out) {
        int i = supervisor_unit_by_pid(s, pid);
        bool first;
        Unit *u;

        if (i < 0)
                return i;
        u = &s->units[i];
        if (u->state != UNIT_STARTING)
                return i;       /* a repeated READY=1, or one while we stop it */

        first = !u->ever_ready;
        u->state = UNIT_RUNNING;
        u->ever_ready = true;
        u->timer = USEC_INFINITY;
        u->watchdog_at = s->timeouts.watchdog > 0 ? add_clamp(now, s->timeouts.watchdog) : USEC_INFINITY;

        if (s->phase != SUPERVISOR_STARTING || !first)
                return i;

        /* Units come up one after the other: the next starts when this one is ready. Units
         * are only started in order, so the last one's first READY means all were ready. */
        if ((size_t) i + 1 < s->n_units) {
                if (s->units[i + 1].state == UNIT_INACTIVE)
                        unit_request_start(s, (size_t) i + 1, out);
        } else {
                s->phase = SUPERVISOR_RUNNING;
                s->ready_announced = true;
                push(out, SUPERVISOR_ACTION_READY, (size_t) i, 0, "ready");
        }
        return i;
}

int supervisor_on_watchdog(Supervisor *s, pid_t pid, usec_t now) {
        int i = supervisor_unit_by_pid(s, pid);
        Unit *u;

        if (i < 0)
                return i;
        u = &s->units[i];
        if (u->state == UNIT_RUNNING && s->timeouts.watchdog > 0)
                u->watchdog_at = add_clamp(now, s->timeouts.watchdog);
        return i;
}

static void unit_failed(Supervisor *s, size_t i, usec_t now, SupervisorActions *out) {
        Unit *u = &s->units[i];
        usec_t ran = now >= u->started_at ? now - u->started_at : 0;
        usec_t delay;

        u->pid = 0;
        u->watchdog_at = USEC_INFINITY;

        if (s->phase == SUPERVISOR_STOPPING || s->phase == SUPERVISOR_DONE) {
                u->state = UNIT_DEAD;
                u->timer = USEC_INFINITY;
                check_done(s, out);
                return;
        }

        if (!u->ever_ready && s->phase == SUPERVISOR_STARTING) {
                /* It never came up: a bad flag, a port in use. Retrying would only hide that. */
                u->state = UNIT_DEAD;
                u->timer = USEC_INFINITY;
                supervisor_stop(s, now, 1, out);
                return;
        }

        delay = supervisor_restart_delay(&s->timeouts, u->restart_delay, ran, &u->restart_delay);
        u->state = UNIT_AUTO_RESTART;
        u->timer = add_clamp(now, delay);
}

int supervisor_on_exit(Supervisor *s, pid_t pid, usec_t now, SupervisorActions *out) {
        int i = supervisor_unit_by_pid(s, pid);

        if (i < 0)
                return i;
        unit_failed(s, (size_t) i, now, out);
        return i;
}

void supervisor_unit_start_failed(Supervisor *s, size_t i, usec_t now, SupervisorActions *out) {
        if (i >= s->n_units)
                return;
        s->units[i].started_at = now;
        unit_failed(s, i, now, out);
}

void supervisor_on_timer(Supervisor *s, usec_t now, SupervisorActions *out) {
        for (size_t i = 0; i < s->n_units; i++) {
                Unit *u = &s->units[i];

                switch (u->state) {
                case UNIT_STARTING:
                        if (u->pid <= 0 || now < u->timer)
                                break;
                        if (!u->ever_ready && s->phase == SUPERVISOR_STARTING) {
                                /* The node never came up: give up, as the caller asked for. */
                                unit_kill(s, i, SIGTERM, now, "start timeout", out);
                                supervisor_stop(s, now, 1, out);
                                return;
                        }
                        unit_kill(s, i, SIGTERM, now, "start timeout", out);
                        break;
                case UNIT_RUNNING:
                        if (now >= u->watchdog_at)
                                unit_kill(s, i, SIGABRT, now, "watchdog timeout", out);
                        break;
                case UNIT_STOPPING:
                        if (now >= u->timer)
                                unit_kill(s, i, SIGKILL, now, "stop timeout", out);
                        break;
                case UNIT_AUTO_RESTART:
                        if (now >= u->timer) {
                                u->n_restarts++;
                                unit_request_start(s, i, out);
                        }
                        break;
                case UNIT_INACTIVE:
                case UNIT_DEAD:
                        break;
                }
        }
}

usec_t supervisor_next_timer(const Supervisor *s) {
        usec_t t = USEC_INFINITY;

        for (size_t i = 0; i < s->n_units; i++) {
                const Unit *u = &s->units[i];

                switch (u->state) {
                case UNIT_STARTING:
                case UNIT_STOPPING:
                case UNIT_AUTO_RESTART:
                        t = MIN(t, u->timer);
                        break;
                case UNIT_RUNNING:
                        t = MIN(t, u->watchdog_at);
                        break;
                default:
                        break;
                }
        }
        return t;
}
