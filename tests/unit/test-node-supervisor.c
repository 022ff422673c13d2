/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Unit tests for mycelia-node's supervision state machine (services/node/node-supervisor.c),
 * driven with a fake clock and fake pids: ordering, backoff, watchdog, timeouts, shutdown. */
#include <signal.h>
#include <stdio.h>

#include "node-supervisor.h"
#include "unit-test.h"

#define MS USEC_PER_MSEC
#define S USEC_PER_SEC
/* SIGTERM (or SIGABRT) to SIGKILL */
#define STOP (supervisor_default_timeouts.stop)

static Supervisor sv;
static SupervisorActions acts;
static usec_t now;

static void setup(void) {
        supervisor_init(&sv, NULL);
        ck_assert_int_eq(supervisor_add_unit(&sv, "mycelia-routerd"), 0);
        ck_assert_int_eq(supervisor_add_unit(&sv, "mycelia-shimd"), 1);
        acts = (SupervisorActions) {};
        now = 1000 * S;
}

static void clear(void) {
        acts = (SupervisorActions) {};
}

static bool has(SupervisorActionType type, size_t unit, int sig) {
        for (size_t i = 0; i < acts.n; i++)
                if (acts.actions[i].type == type && acts.actions[i].unit == unit &&
                    (type != SUPERVISOR_ACTION_SIGNAL || acts.actions[i].signal == sig))
                        return true;
        return false;
}

static size_t count(SupervisorActionType type) {
        size_t n = 0;

        for (size_t i = 0; i < acts.n; i++)
                if (acts.actions[i].type == type)
                        n++;
        return n;
}

/* Brings both units up as pids 100 and 200; leaves acts holding the READY action. */
static void bring_up(void) {
        supervisor_begin(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_START, 0, 0));
        supervisor_unit_started(&sv, 0, 100, now);
        clear();
        ck_assert_int_eq(supervisor_on_ready(&sv, 100, now, &acts), 0);
        ck_assert(has(SUPERVISOR_ACTION_START, 1, 0));
        supervisor_unit_started(&sv, 1, 200, now);
        clear();
        ck_assert_int_eq(supervisor_on_ready(&sv, 200, now, &acts), 1);
        ck_assert(has(SUPERVISOR_ACTION_READY, 1, 0));
        ck_assert_int_eq(sv.phase, SUPERVISOR_RUNNING);
}

START_TEST(test_starts_in_order) {
        supervisor_begin(&sv, now, &acts);
        ck_assert_uint_eq(acts.n, 1);
        ck_assert(has(SUPERVISOR_ACTION_START, 0, 0));
        ck_assert_int_eq(sv.units[1].state, UNIT_INACTIVE);
        supervisor_unit_started(&sv, 0, 100, now);
        clear();

        /* Nothing else happens until the first one is ready. */
        now += 1 * S;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert_uint_eq(acts.n, 0);

        ck_assert_int_eq(supervisor_on_ready(&sv, 100, now, &acts), 0);
        ck_assert_uint_eq(acts.n, 1);
        ck_assert(has(SUPERVISOR_ACTION_START, 1, 0));
        ck_assert_int_eq(sv.units[0].state, UNIT_RUNNING);
        ck_assert(!sv.ready_announced);
        supervisor_unit_started(&sv, 1, 200, now);
        clear();

        ck_assert_int_eq(supervisor_on_ready(&sv, 200, now, &acts), 1);
        ck_assert_uint_eq(acts.n, 1);
        ck_assert(has(SUPERVISOR_ACTION_READY, 1, 0));
        ck_assert(sv.ready_announced);
}
END_TEST

START_TEST(test_unknown_pid) {
        bring_up();
        clear();
        ck_assert_int_eq(supervisor_on_ready(&sv, 999, now, &acts), -ESRCH);
        ck_assert_int_eq(supervisor_on_exit(&sv, 999, now, &acts), -ESRCH);
        ck_assert_int_eq(supervisor_on_watchdog(&sv, 999, now), -ESRCH);
        ck_assert_int_eq(supervisor_on_ready(&sv, 0, now, &acts), -ESRCH);
        ck_assert_uint_eq(acts.n, 0);
}
END_TEST

START_TEST(test_backoff_computation) {
        const SupervisorTimeouts *t = &supervisor_default_timeouts;
        usec_t next, d, prev = t->restart_min;
        usec_t want[] = { 100 * MS, 200 * MS, 400 * MS, 800 * MS, 1600 * MS, 3200 * MS, 5 * S, 5 * S };

        for (size_t i = 0; i < ELEMENTSOF(want); i++) {
                d = supervisor_restart_delay(t, prev, 1 * S, &next);
                ck_assert_uint_eq(d, want[i]);
                prev = next;
        }
        /* Having run 10 s resets it. */
        d = supervisor_restart_delay(t, prev, 10 * S, &next);
        ck_assert_uint_eq(d, 100 * MS);
        ck_assert_uint_eq(next, 200 * MS);
        /* Just under does not. */
        d = supervisor_restart_delay(t, 5 * S, 10 * S - 1, &next);
        ck_assert_uint_eq(d, 5 * S);
        ck_assert_uint_eq(next, 5 * S);
}
END_TEST

START_TEST(test_restart_with_backoff) {
        usec_t delays[] = { 100 * MS, 200 * MS, 400 * MS, 800 * MS };
        pid_t pid = 200;

        sv.timeouts.watchdog = 0;       /* only the restart timers run */
        bring_up();
        for (size_t k = 0; k < ELEMENTSOF(delays); k++) {
                clear();
                now += 1 * S;
                ck_assert_int_eq(supervisor_on_exit(&sv, pid, now, &acts), 1);
                ck_assert_uint_eq(acts.n, 0);
                ck_assert_int_eq(sv.units[1].state, UNIT_AUTO_RESTART);
                ck_assert_int_eq(sv.units[1].pid, 0);
                ck_assert_uint_eq(supervisor_next_timer(&sv), now + delays[k]);

                /* Not before the delay. */
                supervisor_on_timer(&sv, now + delays[k] - 1, &acts);
                ck_assert_uint_eq(acts.n, 0);
                now += delays[k];
                supervisor_on_timer(&sv, now, &acts);
                ck_assert_uint_eq(acts.n, 1);
                ck_assert(has(SUPERVISOR_ACTION_START, 1, 0));
                ck_assert_str_eq(acts.actions[0].reason, "restart");
                pid++;
                supervisor_unit_started(&sv, 1, pid, now);
                clear();
                supervisor_on_ready(&sv, pid, now, &acts);
                /* The ready line is printed once only. */
                ck_assert_uint_eq(count(SUPERVISOR_ACTION_READY), 0);
                ck_assert_int_eq(sv.units[1].state, UNIT_RUNNING);
        }
        ck_assert_uint_eq(sv.units[1].n_restarts, ELEMENTSOF(delays));

        /* Ran 10 s: back to 100 ms. */
        clear();
        now += 10 * S;
        supervisor_on_exit(&sv, pid, now, &acts);
        ck_assert_uint_eq(supervisor_next_timer(&sv), now + 100 * MS);
        /* The other unit was never touched. */
        ck_assert_int_eq(sv.units[0].pid, 100);
        ck_assert_int_eq(sv.units[0].state, UNIT_RUNNING);
}
END_TEST

START_TEST(test_killed_by_signal_restarts_too) {
        bring_up();
        clear();
        /* The supervisor does not care how it ended: any unexpected end restarts. */
        supervisor_on_exit(&sv, 100, now + 1 * S, &acts);
        ck_assert_int_eq(sv.units[0].state, UNIT_AUTO_RESTART);
        ck_assert_int_eq(sv.phase, SUPERVISOR_RUNNING);
}
END_TEST

START_TEST(test_restarted_unit_start_timeout) {
        sv.timeouts.watchdog = 0;       /* only the start timeout runs */
        bring_up();
        clear();
        supervisor_on_exit(&sv, 200, now, &acts);
        now += 100 * MS;
        supervisor_on_timer(&sv, now, &acts);
        supervisor_unit_started(&sv, 1, 201, now);
        clear();

        /* No READY within 15 s: SIGTERM, then SIGKILL after 5 s more, then another restart. */
        ck_assert_uint_eq(supervisor_next_timer(&sv), now + 15 * S);
        now += 15 * S;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 1, SIGTERM));
        ck_assert_int_eq(sv.phase, SUPERVISOR_RUNNING);
        clear();
        now += STOP;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 1, SIGKILL));
        clear();
        supervisor_on_exit(&sv, 201, now, &acts);
        ck_assert_int_eq(sv.units[1].state, UNIT_AUTO_RESTART);
}
END_TEST

START_TEST(test_watchdog) {
        bring_up();
        clear();
        ck_assert_uint_eq(supervisor_next_timer(&sv), now + 10 * S);

        /* Pings keep it alive. */
        for (int i = 0; i < 5; i++) {
                now += 5 * S;
                supervisor_on_watchdog(&sv, 100, now);
                supervisor_on_watchdog(&sv, 200, now);
                supervisor_on_timer(&sv, now, &acts);
                ck_assert_uint_eq(acts.n, 0);
        }

        /* routerd stops pinging: 10 s after its last ping it is killed. */
        now += 5 * S;
        supervisor_on_watchdog(&sv, 200, now);
        supervisor_on_timer(&sv, now, &acts);
        ck_assert_uint_eq(acts.n, 0);
        now += 5 * S;
        supervisor_on_watchdog(&sv, 200, now);
        supervisor_on_timer(&sv, now, &acts);
        ck_assert_uint_eq(acts.n, 1);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGABRT));
        ck_assert_str_eq(acts.actions[0].reason, "watchdog timeout");
        ck_assert_int_eq(sv.units[0].state, UNIT_STOPPING);
        clear();

        /* It hangs even on SIGABRT: SIGKILL after the stop timeout. */
        now += STOP;
        supervisor_on_watchdog(&sv, 200, now);
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGKILL));
        clear();
        supervisor_on_exit(&sv, 100, now, &acts);
        ck_assert_int_eq(sv.units[0].state, UNIT_AUTO_RESTART);
        now += 100 * MS;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_START, 0, 0));
}
END_TEST

START_TEST(test_watchdog_off) {
        SupervisorTimeouts t = supervisor_default_timeouts;

        t.watchdog = 0;
        supervisor_init(&sv, &t);
        supervisor_add_unit(&sv, "a");
        supervisor_begin(&sv, now, &acts);
        supervisor_unit_started(&sv, 0, 100, now);
        clear();
        supervisor_on_ready(&sv, 100, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_READY, 0, 0));
        ck_assert_uint_eq(supervisor_next_timer(&sv), USEC_INFINITY);
        clear();
        supervisor_on_timer(&sv, now + 3600 * S, &acts);
        ck_assert_uint_eq(acts.n, 0);
}
END_TEST

START_TEST(test_initial_exit_is_fatal) {
        supervisor_begin(&sv, now, &acts);
        supervisor_unit_started(&sv, 0, 100, now);
        supervisor_on_ready(&sv, 100, now, &acts);
        supervisor_unit_started(&sv, 1, 200, now);
        clear();

        /* shimd fails before READY (port in use): the node stops with status 1. */
        supervisor_on_exit(&sv, 200, now + 50 * MS, &acts);
        ck_assert_int_eq(sv.phase, SUPERVISOR_STOPPING);
        ck_assert_int_eq(sv.exit_status, 1);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGTERM));
        ck_assert_uint_eq(count(SUPERVISOR_ACTION_DONE), 0);
        ck_assert_uint_eq(count(SUPERVISOR_ACTION_READY), 0);
        clear();

        supervisor_on_exit(&sv, 100, now + 60 * MS, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
        ck_assert_int_eq(sv.phase, SUPERVISOR_DONE);
        ck_assert_int_eq(sv.exit_status, 1);
}
END_TEST

START_TEST(test_initial_start_timeout_is_fatal) {
        supervisor_begin(&sv, now, &acts);
        supervisor_unit_started(&sv, 0, 100, now);
        clear();
        now += 15 * S - 1;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert_uint_eq(acts.n, 0);
        now += 1;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGTERM));
        ck_assert_int_eq(sv.phase, SUPERVISOR_STOPPING);
        ck_assert_int_eq(sv.exit_status, 1);
        /* The unit never started is simply dead. */
        ck_assert_int_eq(sv.units[1].state, UNIT_DEAD);
        clear();
        now += STOP;
        supervisor_on_timer(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGKILL));
        clear();
        supervisor_on_exit(&sv, 100, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
}
END_TEST

START_TEST(test_earlier_unit_dies_during_startup) {
        supervisor_begin(&sv, now, &acts);
        supervisor_unit_started(&sv, 0, 100, now);
        supervisor_on_ready(&sv, 100, now, &acts);
        supervisor_unit_started(&sv, 1, 200, now);
        clear();

        /* routerd was ready once, then crashed while shimd starts: restart it, keep going. */
        supervisor_on_exit(&sv, 100, now + 1 * S, &acts);
        ck_assert_int_eq(sv.units[0].state, UNIT_AUTO_RESTART);
        ck_assert_int_eq(sv.phase, SUPERVISOR_STARTING);
        ck_assert_uint_eq(acts.n, 0);
        supervisor_on_timer(&sv, now + 1 * S + 100 * MS, &acts);
        ck_assert(has(SUPERVISOR_ACTION_START, 0, 0));
        supervisor_unit_started(&sv, 0, 101, now + 1 * S + 100 * MS);
        clear();
        supervisor_on_ready(&sv, 101, now + 2 * S, &acts);
        /* Its second READY starts nothing new. */
        ck_assert_uint_eq(acts.n, 0);
        supervisor_on_ready(&sv, 200, now + 2 * S, &acts);
        ck_assert(has(SUPERVISOR_ACTION_READY, 1, 0));
}
END_TEST

START_TEST(test_stop) {
        bring_up();
        clear();
        supervisor_stop(&sv, now, 0, &acts);
        ck_assert_int_eq(sv.phase, SUPERVISOR_STOPPING);
        ck_assert_uint_eq(acts.n, 2);
        /* Reverse order: shimd first. */
        ck_assert_int_eq(acts.actions[0].unit, 1);
        ck_assert_int_eq(acts.actions[0].signal, SIGTERM);
        ck_assert_int_eq(acts.actions[1].unit, 0);
        clear();

        /* Exits during a stop are not restarted. */
        supervisor_on_exit(&sv, 200, now + 10 * MS, &acts);
        ck_assert_int_eq(sv.units[1].state, UNIT_DEAD);
        ck_assert_uint_eq(acts.n, 0);
        ck_assert_uint_eq(supervisor_next_timer(&sv), now + STOP);

        /* routerd ignores SIGTERM: SIGKILL after the stop timeout. */
        supervisor_on_timer(&sv, now + STOP, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGKILL));
        ck_assert_uint_eq(supervisor_next_timer(&sv), USEC_INFINITY);
        clear();
        supervisor_on_exit(&sv, 100, now + STOP + 1, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
        ck_assert_int_eq(sv.exit_status, 0);

        /* Nothing more after DONE. */
        clear();
        supervisor_stop(&sv, now + 6 * S, 1, &acts);
        supervisor_on_timer(&sv, now + 100 * S, &acts);
        ck_assert_uint_eq(acts.n, 0);
        ck_assert_int_eq(sv.exit_status, 0);
}
END_TEST

START_TEST(test_stop_twice_escalates) {
        bring_up();
        clear();
        supervisor_stop(&sv, now, 0, &acts);
        clear();
        supervisor_stop(&sv, now + 1 * S, 0, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGKILL));
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 1, SIGKILL));
}
END_TEST

START_TEST(test_stop_during_backoff) {
        bring_up();
        clear();
        supervisor_on_exit(&sv, 200, now, &acts);
        ck_assert_int_eq(sv.units[1].state, UNIT_AUTO_RESTART);
        supervisor_stop(&sv, now + 10 * MS, 0, &acts);
        ck_assert_int_eq(sv.units[1].state, UNIT_DEAD);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGTERM));
        clear();
        /* The pending restart never happens. */
        supervisor_on_timer(&sv, now + 1 * S, &acts);
        ck_assert(!has(SUPERVISOR_ACTION_START, 1, 0));
        supervisor_on_exit(&sv, 100, now + 1 * S, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
}
END_TEST

START_TEST(test_stop_while_starting) {
        supervisor_begin(&sv, now, &acts);
        supervisor_unit_started(&sv, 0, 100, now);
        clear();
        supervisor_stop(&sv, now, 0, &acts);
        ck_assert(has(SUPERVISOR_ACTION_SIGNAL, 0, SIGTERM));
        ck_assert_int_eq(sv.units[1].state, UNIT_DEAD);
        clear();
        /* A late READY neither starts the next unit nor announces anything. */
        supervisor_on_ready(&sv, 100, now, &acts);
        ck_assert_uint_eq(acts.n, 0);
        supervisor_on_exit(&sv, 100, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
        ck_assert_int_eq(sv.exit_status, 0);
}
END_TEST

START_TEST(test_start_failed) {
        bring_up();
        clear();
        supervisor_on_exit(&sv, 200, now, &acts);
        now += 100 * MS;
        supervisor_on_timer(&sv, now, &acts);
        clear();
        /* fork() failed: treated as an exit, so it is tried again later. */
        supervisor_unit_start_failed(&sv, 1, now, &acts);
        ck_assert_int_eq(sv.units[1].state, UNIT_AUTO_RESTART);
        ck_assert_uint_eq(supervisor_next_timer(&sv), now + 200 * MS);
}
END_TEST

START_TEST(test_no_units) {
        supervisor_init(&sv, NULL);
        supervisor_begin(&sv, now, &acts);
        ck_assert(has(SUPERVISOR_ACTION_READY, 0, 0));
        clear();
        supervisor_stop(&sv, now, 0, &acts);
        ck_assert(has(SUPERVISOR_ACTION_DONE, 0, 0));
}
END_TEST

START_TEST(test_unit_limit) {
        supervisor_init(&sv, NULL);
        for (int i = 0; i < SUPERVISOR_UNITS_MAX; i++)
                ck_assert_int_eq(supervisor_add_unit(&sv, "x"), i);
        ck_assert_int_eq(supervisor_add_unit(&sv, "x"), -E2BIG);
        ck_assert_str_eq(unit_state_to_string(UNIT_AUTO_RESTART), "auto-restart");
        ck_assert_str_eq(unit_state_to_string((UnitState) 99), "unknown");
}
END_TEST

static Suite *supervisor_suite(void) {
        Suite *s = suite_create("node-supervisor");
        TCase *tc = tcase_create("core");

        tcase_add_checked_fixture(tc, setup, NULL);
        tcase_add_test(tc, test_starts_in_order);
        tcase_add_test(tc, test_unknown_pid);
        tcase_add_test(tc, test_backoff_computation);
        tcase_add_test(tc, test_restart_with_backoff);
        tcase_add_test(tc, test_killed_by_signal_restarts_too);
        tcase_add_test(tc, test_restarted_unit_start_timeout);
        tcase_add_test(tc, test_watchdog);
        tcase_add_test(tc, test_watchdog_off);
        tcase_add_test(tc, test_initial_exit_is_fatal);
        tcase_add_test(tc, test_initial_start_timeout_is_fatal);
        tcase_add_test(tc, test_earlier_unit_dies_during_startup);
        tcase_add_test(tc, test_stop);
        tcase_add_test(tc, test_stop_twice_escalates);
        tcase_add_test(tc, test_stop_during_backoff);
        tcase_add_test(tc, test_stop_while_starting);
        tcase_add_test(tc, test_start_failed);
        tcase_add_test(tc, test_no_units);
        tcase_add_test(tc, test_unit_limit);
        suite_add_tcase(s, tc);
        return s;
}

int main(void) {
        return unit_test_run(supervisor_suite());
}
