/*
 * fuzz_recovery: what a restarted receiver does with the files it finds in
 * its output directory. The first input byte picks the file kind (a pcapng
 * or classic pcap ".part" left by a crash, or a completed pcapng whose
 * trailing checkpoint is read); the rest is the file. Recovery must cut,
 * repair or leave it alone without reading out of bounds, and report only
 * well-formed (sensor, session, sequence) facts. The custom-block parser is
 * fed the same bytes directly too.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/wire.h"
#include "receiver/recovery.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char g_dir[64];

static void on_fact(void *ud, const char *id, size_t id_len, uint64_t session, uint64_t seq)
{
    (void)ud;
    (void)session;
    (void)seq;
    if (!id || id_len == 0 || id_len > PS_WIRE_MAX_ID_LEN)
        abort();
}

static void empty_dir(void)
{
    DIR *d = opendir(g_dir);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char path[512];
        snprintf(path, sizeof(path), "%s/%s", g_dir, de->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
}

/* Removed at exit, so fuzz runs and ctest's corpus replays leave nothing
 * behind in /dev/shm. */
static void remove_dir(void)
{
    empty_dir();
    rmdir(g_dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1 || size > (1u << 20))
        return 0;
    if (!g_dir[0]) {
        ps_log_set_level((ps_log_level)(PS_LOG_ERROR + 1)); /* repairs log every run */
        strcpy(g_dir, "/dev/shm/ps-fuzz-recovery-XXXXXX");
        if (!mkdtemp(g_dir)) {
            strcpy(g_dir, "/tmp/ps-fuzz-recovery-XXXXXX");
            if (!mkdtemp(g_dir))
                abort();
        }
        atexit(remove_dir);
    }
    (void)ps_recovery_parse(data + 1, size - 1, on_fact, NULL);

    static const char *const names[] = {"f-20200101T000000Z-000001.pcapng.part",
                                        "f-20200101T000000Z-000001.pcap.part",
                                        "f-20200101T000000Z-000001.pcapng"};
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", g_dir, names[data[0] % 3]);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    if (write(fd, data + 1, size - 1) != (ssize_t)(size - 1))
        abort();
    close(fd);
    ps_recovery_report rep;
    char err[256];
    if (ps_recovery_run(g_dir, "f", PS_FORMAT_PCAPNG, on_fact, NULL, &rep, err, sizeof(err)) != 0)
        abort(); /* the directory is readable: only a file may be refused */
    if (rep.repaired > 1 || rep.bytes_cut > size - 1)
        abort();
    empty_dir();
    return 0;
}
