/*
 * fuzz_config: the YAML configuration loader (ps_config_load_string) and the
 * cross-key validation, as check-config runs them on an untrusted file.
 */
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    for (int role = 0; role < 2; role++) {
        ps_config c;
        char err[PS_CONFIG_ERR_MAX];
        if (ps_config_init(&c, role ? PS_ROLE_RECEIVER : PS_ROLE_SENSOR) != 0)
            return 0;
        if (ps_config_load_string(&c, (const char *)data, size, "fuzz.yaml", err, sizeof(err)) == 0)
            ps_config_validate(&c, err, sizeof(err));
        ps_config_free(&c);
    }
    return 0;
}
