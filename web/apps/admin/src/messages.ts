// What the page tells the user when Herald refuses the stream. Pure.

/** The fields of a HeraldError the message needs. */
export interface Refusal {
  status: number;
  code: string;
  message: string;
}

/**
 * refusalMessage explains a refusal: 401 (the key or token is not accepted),
 * 403 (accepted, but it does not grant herald/stats), or anything else.
 */
export function refusalMessage(e: Refusal): string {
  const detail = e.code ? ` (${e.status} ${e.code}${e.message ? ': ' + e.message : ''})` : ` (${e.status}${e.message ? ': ' + e.message : ''})`;
  if (e.status === 401) {
    return `Herald did not accept this credential${detail}. Enter the publish key, or a token that is valid now.`;
  }
  if (e.status === 403) {
    return `This credential does not grant herald/stats${detail}. Use the publish key, or a token whose subscribe grant names herald/stats or herald/*.`;
  }
  return `Herald refused the stream${detail}.`;
}
