/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The one main() every Check unit test needs: run the suite, TAP on stdout for meson's
 * protocol 'tap' (nothing else goes there), exit status from the failure count. */
#pragma once

#include <check.h>
#include <stdlib.h>

static inline int unit_test_run(Suite *suite) {
        SRunner *sr = srunner_create(suite);
        int failed;

        srunner_set_tap(sr, "-");
        srunner_run_all(sr, CK_SILENT);
        failed = srunner_ntests_failed(sr);
        srunner_free(sr);
        return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
