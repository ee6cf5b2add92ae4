/**
 * Attachment uploads with progress: a file from an `<input type=file>` becomes a blobId.
 *
 * In:   a File, the account's Postern upload capability `https://postern.dev/jmap/upload` (or the
 *       RFC 8620 upload URL's limit and the app's upload call) and a way to call JMAP.
 * Out:  {@link startUpload} -> `{done, abort}`: `done` resolves to the blob (blobId, type, size,
 *       name); `onProgress(sent, total)` is called as XMLHttpRequest's upload progress fires.
 * Fails: `done` rejects with an {@link UploadError} whose message is for the user (too large, the
 *       upload form refused, the network).
 *
 * With the Postern capability every file, small or large, goes straight to S3: `Upload/create`
 * hands out a presigned POST (key, policy, signature; README "JMAP blobs") and the browser posts
 * the form fields then the file as `file` (S3 answers 204). Without it (a server that does not offer
 * it), the RFC 8620 §6.1 upload URL takes files up to `maxSizeUpload` through the app's client.
 */

import type { Attachment } from "./model";

export const UPLOAD_CAPABILITY = "https://postern.dev/jmap/upload";
const MEDIA_TYPE = /^[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,63}\/[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}$/;

export class UploadError extends Error {}

export interface UploadEnv {
  accountId: string;
  /** the account's value of the Postern upload capability, if offered: {maxSize, expiresIn} */
  presign: { maxSize: number; expiresIn: number } | null;
  /** the RFC 8620 §6.1 upload URL's limit, and a POST of a file to it (the app's JMAP client) */
  maxSizeUpload: number;
  uploadDirect: (file: File, type: string) => Promise<{ blobId: string; type: string; size: number }>;
  /** one JMAP method call: [name, args] -> the response's [name, args] */
  call: (name: string, args: Record<string, unknown>) => Promise<[string, Record<string, unknown>]>;
}

export interface Upload {
  done: Promise<Attachment>;
  abort: () => void;
}

export function mediaType(file: File): string {
  const t = (file.type || "").toLowerCase();
  return MEDIA_TYPE.test(t) ? t : "application/octet-stream";
}

export function maxFileSize(env: UploadEnv): number {
  return env.presign ? env.presign.maxSize : env.maxSizeUpload;
}

interface Presigned {
  blobId: string;
  url: string;
  fields: Record<string, string>;
  type: string;
}

export function startUpload(env: UploadEnv, file: File, onProgress: (sent: number, total: number) => void): Upload {
  let xhr: XMLHttpRequest | null = null;
  let aborted = false;
  const type = mediaType(file);
  const done = (async (): Promise<Attachment> => {
    const limit = maxFileSize(env);
    if (file.size > limit) throw new UploadError(`${file.name} is larger than ${Math.floor(limit / 1048576)} MB`);
    if (file.size === 0) throw new UploadError(`${file.name} is empty`);
    if (env.presign) {
      const form = await presign(env, type, file.size);
      if (aborted) throw new UploadError("cancelled");
      const body = new FormData();
      for (const [k, v] of Object.entries(form.fields)) body.append(k, v); // the fields as given, the file last
      body.append("file", file, file.name);
      xhr = new XMLHttpRequest();
      await send(xhr, "POST", form.url, body, onProgress, file.size);
      return { blobId: form.blobId, name: file.name, type: form.type, size: file.size };
    }
    // no presigned uploads here: the upload URL, in one piece (its limit is small) and without progress
    onProgress(0, file.size);
    let blob: { blobId: string };
    try {
      blob = await env.uploadDirect(file, type);
    } catch (e) {
      throw new UploadError(`upload failed: ${(e as Error).message}`);
    }
    onProgress(file.size, file.size);
    return { blobId: blob.blobId, name: file.name, type, size: file.size };
  })();
  return {
    done,
    abort: () => {
      aborted = true;
      xhr?.abort();
    },
  };
}

async function presign(env: UploadEnv, type: string, size: number): Promise<Presigned> {
  const [name, out] = await env.call("Upload/create", { accountId: env.accountId, create: { u: { type, size } } });
  if (name === "error") throw new UploadError(`upload refused: ${String(out.description ?? out.type)}`);
  const created = (out.created as Record<string, Presigned> | undefined)?.u;
  if (!created) {
    const err = (out.notCreated as Record<string, { type: string; description?: string }> | undefined)?.u;
    throw new UploadError(err?.type === "tooLarge" ? "the file is too large" : `upload refused: ${err?.description ?? err?.type}`);
  }
  return created;
}

function send(xhr: XMLHttpRequest, method: string, url: string, body: XMLHttpRequestBodyInit,
              onProgress: (sent: number, total: number) => void,
              total: number): Promise<string> {
  return new Promise((resolve, reject) => {
    xhr.open(method, url); // no credentials, no Authorization: S3 refuses a second authentication
    xhr.upload.onprogress = (e) => onProgress(Math.min(e.loaded, total), e.lengthComputable ? Math.max(e.total, 1) : total);
    xhr.onload = () => {
      if (xhr.status >= 200 && xhr.status < 300) {
        onProgress(total, total);
        resolve(xhr.responseText);
      } else {
        // S3 answers XML naming the refused condition (EntityTooLarge, AccessDenied for an expired form)
        const code = /<Code>([^<]{1,64})<\/Code>/.exec(xhr.responseText || "")?.[1];
        reject(new UploadError(`upload failed (${xhr.status}${code ? ` ${code}` : ""})`));
      }
    };
    xhr.onerror = () => reject(new UploadError("upload failed: network error"));
    xhr.onabort = () => reject(new UploadError("cancelled"));
    xhr.send(body);
  });
}
