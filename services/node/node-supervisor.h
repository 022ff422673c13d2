/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The supervision state machine of mycelia-node: start daemons in order, wait for READY=1,
 * restart with backoff, watchdog, orderly stop. Pure: no I/O, time is an argument. */
#pragma once

#include <sys/types.h>

#include "macro.h"

#define SUPERVISOR_UNITS_MAX 8
#define SUPERVISOR_ACTIONS_MAX (2 * SUPERVISOR_UNITS_MAX + 2)

typedef enum UnitState {
        UNIT_INACTIVE,          /* not started yet */
        UNIT_STARTING,          /* START asked for or running, waiting for READY=1 */
        UNIT_RUNNING,           /* READY=1 seen */
        UNIT_STOPPING,          /* signalled (stop, start timeout, watchdog), waiting for it to exit */
        UNIT_AUTO_RESTART,      /* exited unexpectedly, restart when the backoff ends */
        UNIT_DEAD,              /* stopped for good (the node is shutting down) */
} UnitState;

typedef struct SupervisorTimeouts {
        usec_t start;           /* READY=1 must come this long after the start (15 s) */
        usec_t stop;            /* SIGKILL this long after SIGTERM or SIGABRT (5 s) */
        usec_t watchdog;        /* WATCHDOG_USEC given to the daemons; 0: off (10 s) */
        usec_t restart_min;     /* first restart delay (100 ms) */
        usec_t restart_max;     /* the delay doubles up to this (5 s) */
        usec_t restart_reset;   /* a daemon that ran this long starts over at restart_min (10 s) */
} SupervisorTimeouts;

extern const SupervisorTimeouts supervisor_default_timeouts;

typedef struct Unit {
        const char *name;
        UnitState state;
        pid_t pid;              /* 0 when not running */
        bool ever_ready;        /* READY=1 seen at least once since the launcher started */
        usec_t started_at;
        usec_t timer;           /* STARTING: start timeout; STOPPING: SIGKILL; AUTO_RESTART: restart */
        usec_t watchdog_at;     /* RUNNING: when the watchdog expires */
        usec_t restart_delay;   /* delay before the next restart */
        unsigned n_restarts;
} Unit;

typedef enum SupervisorPhase {
        SUPERVISOR_STARTING,    /* bringing the daemons up one by one */
        SUPERVISOR_RUNNING,     /* all were ready once; supervising */
        SUPERVISOR_STOPPING,    /* stopping every daemon */
        SUPERVISOR_DONE,        /* all down; exit with exit_status */
} SupervisorPhase;

typedef enum SupervisorActionType {
        SUPERVISOR_ACTION_START,        /* fork+exec the unit, then supervisor_unit_started() */
        SUPERVISOR_ACTION_SIGNAL,       /* send signal to the unit's pid */
        SUPERVISOR_ACTION_READY,        /* every unit became ready for the first time */
        SUPERVISOR_ACTION_DONE,         /* every unit is down after a stop: exit with exit_status */
} SupervisorActionType;

typedef struct SupervisorAction {
        SupervisorActionType type;
        size_t unit;
        int signal;
        const char *reason;     /* static text for the log: "start timeout", "watchdog timeout", ... */
} SupervisorAction;

typedef struct SupervisorActions {
        SupervisorAction actions[SUPERVISOR_ACTIONS_MAX];
        size_t n;
} SupervisorActions;

typedef struct Supervisor {
        SupervisorTimeouts timeouts;
        Unit units[SUPERVISOR_UNITS_MAX];
        size_t n_units;
        SupervisorPhase phase;
        int exit_status;
        bool ready_announced;
} Supervisor;

void supervisor_init(Supervisor *s, const SupervisorTimeouts *timeouts);
/* Appends a unit (started in the order added); returns its index or -E2BIG. */
int supervisor_add_unit(Supervisor *s, const char *name);

/* Starts the first unit. */
void supervisor_begin(Supervisor *s, usec_t now, SupervisorActions *out);
/* The START action was carried out: the unit runs as pid. */
void supervisor_unit_started(Supervisor *s, size_t unit, pid_t pid, usec_t now);
/* The START action failed (fork or exec could not happen); handled like an exit. */
void supervisor_unit_start_failed(Supervisor *s, size_t unit, usec_t now, SupervisorActions *out);

/* Returns the index of the unit running as pid, or -ESRCH. */
int supervisor_unit_by_pid(const Supervisor *s, pid_t pid);

/* READY=1 from pid. Returns the unit index, or -ESRCH for a pid we do not run. */
int supervisor_on_ready(Supervisor *s, pid_t pid, usec_t now, SupervisorActions *out);
/* WATCHDOG=1 from pid. */
int supervisor_on_watchdog(Supervisor *s, pid_t pid, usec_t now);
/* pid exited or died. Returns the unit index, or -ESRCH. */
int supervisor_on_exit(Supervisor *s, pid_t pid, usec_t now, SupervisorActions *out);
/* Fires whatever timers are due at now. */
void supervisor_on_timer(Supervisor *s, usec_t now, SupervisorActions *out);
/* Stops every unit; the DONE action carries exit_status once all are down. A second call
 * while stopping escalates to SIGKILL. */
void supervisor_stop(Supervisor *s, usec_t now, int exit_status, SupervisorActions *out);

/* The earliest time supervisor_on_timer() has something to do, or USEC_INFINITY. */
usec_t supervisor_next_timer(const Supervisor *s);

/* Backoff: the delay for this restart given the previous delay and how long the unit ran;
 * *next is the delay for the restart after it. */
usec_t supervisor_restart_delay(const SupervisorTimeouts *t, usec_t previous, usec_t ran, usec_t *next);

const char *unit_state_to_string(UnitState s);
