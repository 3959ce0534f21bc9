import type { Digest } from './digest.js';

/** OCI and Docker media types tsbuild reads and writes. */
export const MediaType = {
  ociManifest: 'application/vnd.oci.image.manifest.v1+json',
  ociIndex: 'application/vnd.oci.image.index.v1+json',
  ociConfig: 'application/vnd.oci.image.config.v1+json',
  ociLayer: 'application/vnd.oci.image.layer.v1.tar',
  ociLayerGzip: 'application/vnd.oci.image.layer.v1.tar+gzip',
  ociLayerZstd: 'application/vnd.oci.image.layer.v1.tar+zstd',
  dockerManifest: 'application/vnd.docker.distribution.manifest.v2+json',
  dockerManifestList: 'application/vnd.docker.distribution.manifest.list.v2+json',
  dockerConfig: 'application/vnd.docker.container.image.v1+json',
  dockerLayerGzip: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
} as const;

/** The OCI platform object. */
export interface Platform {
  readonly architecture: string;
  readonly os: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
  readonly variant?: string;
}

/** An OCI content descriptor. */
export interface Descriptor {
  readonly mediaType: string;
  readonly digest: Digest;
  readonly size: number;
  readonly urls?: readonly string[];
  readonly annotations?: Readonly<Record<string, string>>;
  readonly platform?: Platform;
  readonly artifactType?: string;
}

/** An OCI image manifest (also models Docker schema 2 manifests). */
export interface ImageManifest {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly config: Descriptor;
  readonly layers: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** An OCI image index (also models Docker manifest lists). */
export interface ImageIndex {
  readonly schemaVersion: 2;
  readonly mediaType?: string;
  readonly artifactType?: string;
  readonly manifests: readonly Descriptor[];
  readonly subject?: Descriptor;
  readonly annotations?: Readonly<Record<string, string>>;
}

/** The `config` object of an image configuration (what a container runs). */
export interface ContainerConfig {
  readonly User?: string;
  readonly ExposedPorts?: Readonly<Record<string, Record<string, never>>>;
  readonly Env?: readonly string[];
  readonly Entrypoint?: readonly string[] | null;
  readonly Cmd?: readonly string[] | null;
  readonly Volumes?: Readonly<Record<string, Record<string, never>>>;
  readonly WorkingDir?: string;
  readonly Labels?: Readonly<Record<string, string>>;
  readonly StopSignal?: string;
  readonly ArgsEscaped?: boolean;
  /** Docker extension, kept for compatibility. */
  readonly Healthcheck?: HealthConfig;
  /** Docker extension, kept for compatibility. */
  readonly OnBuild?: readonly string[] | null;
  /** Docker extension, kept for compatibility. */
  readonly Shell?: readonly string[];
}

/** Docker's healthcheck config (durations in nanoseconds). */
export interface HealthConfig {
  readonly Test?: readonly string[];
  readonly Interval?: number;
  readonly Timeout?: number;
  readonly StartPeriod?: number;
  readonly StartInterval?: number;
  readonly Retries?: number;
}

/** One image history entry. */
export interface HistoryEntry {
  readonly created?: string;
  readonly created_by?: string;
  readonly author?: string;
  readonly comment?: string;
  readonly empty_layer?: boolean;
}

/** An OCI image configuration. */
export interface ImageConfig {
  readonly created?: string;
  readonly author?: string;
  readonly architecture: string;
  readonly os: string;
  readonly 'os.version'?: string;
  readonly 'os.features'?: readonly string[];
  readonly variant?: string;
  readonly config?: ContainerConfig;
  readonly rootfs: { readonly type: 'layers'; readonly diff_ids: readonly Digest[] };
  readonly history?: readonly HistoryEntry[];
}
