// Starts Swagger UI on /docs. A file rather than an inline script, so that the page's policy can
// be `script-src 'self'`.
//
// With KEEL_DOCS=admin the schema is served only to an administrator's access token. The page then
// starts on a schema that holds nothing but the sign-in, so that Authorize is there; each time
// Authorize obtains a token, the real schema is loaded with it. The token lives only in this page.
"use strict";

(() => {
  const SCHEMA = "/openapi.json";
  const SIGN_IN_SCHEMA = {
    openapi: "3.1.0",
    info: {
      title: "Keel",
      description: "This server shows its API schema to administrators only: sign in with **Authorize**.",
    },
    paths: {},
    components: {
      securitySchemes: {
        OAuth2PasswordBearer: { type: "oauth2", flows: { password: { tokenUrl: "/api/v1/auth/login", scopes: {} } } },
      },
    },
  };
  let accessToken = null;
  let adminOnly = false;

  const LoadSchemaOnAuthorize = () => ({
    statePlugins: {
      auth: {
        wrapActions: {
          authorizeOauth2: (original, system) => (payload) => {
            const result = original(payload);
            accessToken = payload?.token?.access_token ?? null;
            if (adminOnly && accessToken) {
              system.specActions.updateUrl(SCHEMA);
              system.specActions.download(SCHEMA);
            }
            return result;
          },
          logout: (original) => (payload) => {
            accessToken = null;
            return original(payload);
          },
        },
      },
    },
  });

  function withToken(request) {
    if (request.loadSpec && accessToken) {
      request.headers.Authorization = `Bearer ${accessToken}`;
    }
    return request;
  }

  async function start() {
    try {
      const probe = await fetch(SCHEMA, { headers: { Accept: "application/json" } });
      adminOnly = probe.status === 401;
    } catch {
      // Swagger UI reports an unreachable schema itself.
    }
    window.ui = SwaggerUIBundle({
      ...(adminOnly ? { spec: SIGN_IN_SCHEMA } : { url: SCHEMA }),
      dom_id: "#swagger-ui",
      layout: "BaseLayout",
      deepLinking: true,
      showExtensions: true,
      showCommonExtensions: true,
      presets: [SwaggerUIBundle.presets.apis],
      plugins: [LoadSchemaOnAuthorize],
      requestInterceptor: withToken,
      oauth2RedirectUrl: `${window.location.origin}/docs/oauth2-redirect`,
      // The default would send the schema to validator.swagger.io for a badge.
      validatorUrl: null,
    });
  }

  start();
})();
