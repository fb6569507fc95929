export const handler = () => Response.json({ status: "ok" });
