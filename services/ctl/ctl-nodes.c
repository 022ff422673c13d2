/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* Node names for myceliactl's lists: a holder is easier to recognise as "kb" than as 12 hex
 * digits, but only a name that belongs to one member says which node it is. */
#include <stdio.h>

#include "ctl-nodes.h"

const char *ctl_nodes_name(const GossipMember *members, size_t n_members, const char *id) {
        const char *name = NULL;

        for (size_t i = 0; i < n_members; i++)
                if (streq_ptr(members[i].id, id))
                        name = members[i].name;
        if (isempty(name))
                return NULL;
        for (size_t i = 0; i < n_members; i++)
                if (!streq_ptr(members[i].id, id) && streq_ptr(members[i].name, name))
                        return NULL;
        return name;
}

char *ctl_nodes_join(const char *const *ids, size_t n_ids, const char *local_id, const GossipMember *members,
                     size_t n_members) {
        char *buf = NULL;
        size_t size = 0;
        FILE *f = open_memstream(&buf, &size);

        if (!f)
                return NULL;
        for (size_t i = 0; i < n_ids; i++) {
                const char *name = ctl_nodes_name(members, n_members, ids[i]);

                if (i > 0)
                        fputc(',', f);
                if (name)
                        fputs(name, f);
                else
                        fprintf(f, "%.*s", CTL_NODE_ID_SHOWN, ids[i]);
                if (streq_ptr(ids[i], local_id))
                        fputc('*', f);
        }
        if (fclose(f) != 0) {
                free(buf);
                return NULL;
        }
        return buf;
}
